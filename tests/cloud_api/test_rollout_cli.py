"""``tether rollout status|pause|resume|undo|history``, ``tether diff`` and ``tether shadow
history`` against the served app (CliRunner), with the cloud's clock moved by the test."""

from __future__ import annotations

from typing import Any

import pytest

from cloud_api.admin.client import ClientError
from cloud_api.admin.history_views import parse_at
from cloud_api.runtime import Cloud
from tests.cloud_api.conftest import Clock
from tests.cloud_api.test_admin_cli import Tether, set_online, tether  # noqa: F401 (fixture)
from tests.cloud_api.test_rollout_waves import report, settle

APP = """\
kind: App
metadata: {name: web}
spec:
  services: [{name: main, image: "web:%s"}]
"""
ROLLOUT = "  rollout: {waves: [1], orderBy: canary, minReadySeconds: 5, onFailure: rollback}\n"
NODES = """\
kind: Node
metadata: {name: n1, labels: {canary: "yes"}}
---
kind: Node
metadata: {name: n2}
"""


@pytest.fixture
def cloud(make_settings: Any, clock: Clock) -> Any:
    with Cloud(make_settings(rollout_poll_seconds=3600), clock=clock) as opened:
        yield opened


def test_pause_resume_undo_history_diff_and_shadow_history(
    cloud: Cloud, tether: Tether, clock: Clock,  # noqa: F811 (the fixture imported above)
) -> None:
    assert tether("apply", "-f", "-", input=NODES).exit_code == 0
    assert tether("apply", "-f", "-", input=APP % "1").exit_code == 0
    settle(cloud)
    set_online(cloud, "n1")
    set_online(cloud, "n2")
    report(cloud, clock, ["n1", "n2"], "1")
    assert tether("apply", "-f", "-", input=APP % "2" + ROLLOUT).exit_code == 0
    cloud.rollouts.run_once()
    settle(cloud)

    status = tether("rollout", "status", "web")
    assert status.exit_code == 0, status.output
    assert "rollout progressing: version 1 -> 2, wave 1" in status.stdout
    assert "WAVE" in status.stdout and "pending" in status.stdout

    paused = tether("rollout", "pause", "web")
    assert paused.exit_code == 0 and paused.stdout.startswith("app/web rollout paused")
    again = tether("rollout", "pause", "web")
    assert again.exit_code == 1 and again.stderr.startswith("error: the rollout of web is paused")
    assert tether("rollout", "resume", "web").exit_code == 0
    undone = tether("rollout", "undo", "web")
    assert undone.exit_code == 0 and "rolled back by an operator to 1" in undone.stdout
    settle(cloud)
    after = tether("rollout", "status", "web")
    assert after.exit_code == 1 and "rolled back" in after.stderr

    history = tether("rollout", "history", "web")
    assert history.exit_code == 0 and "services[0].image" in history.stdout
    diff = tether("diff", "app", "web", "--from", "1", "--to", "2")
    assert diff.exit_code == 0, diff.output
    assert '~ services[0].image: "web:1" -> "web:2"' in diff.stdout
    missing = tether("diff", "app", "web", "--from", "1", "--to", "7")
    assert missing.exit_code == 1 and "has no version '7'" in missing.stderr

    shadow = tether("shadow", "history", "n1")
    assert shadow.exit_code == 0, shadow.output
    assert "rollout:web" in shadow.stdout and "node" in shadow.stdout and "web@1" in shadow.stdout
    bad = tether("shadow", "history", "n1", "--at", "noon")
    assert bad.exit_code == 1 and "write epoch seconds" in bad.stderr


@pytest.mark.parametrize(("text", "expected"), [
    ("1800000000", 1_800_000_000), ("2027-01-15T08:00:00", 1_800_000_000),
    ("2027-01-15T09:00:00+01:00", 1_800_000_000), ("08:00", 1_800_000_000),
])
def test_at_takes_what_an_operator_writes(text: str, expected: int) -> None:
    assert parse_at(text, now=1_800_000_000 + 3600) == expected
    with pytest.raises(ClientError, match="14:02"):
        parse_at("yesterday")
