"""The agent's own version rolled out in waves (SQLite and PostgreSQL, time moved by the
test's clock, nodes' reports written through the bridge's batched path, no real agent): a
version nodes roll back stops after the first wave and the nodes it reached get their
previous target back (or none); a good one goes through every wave in order;
pause/resume/undo work through REST and the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from cloud_api.packaging import pack_running
from cloud_api.runtime import Cloud
from cloud_api.services.agent_rollout import AGENT_SUBJECT
from cloud_api.store.shadow_writing import Presence, Update, write_batch
from schemas.shadow import parse_update_request
from tests.cloud_api.conftest import Clock, admin_token

NS = "/v1/namespaces/default"
NODES = [f"n{i}" for i in range(6)]  # n5 is the canary (ring=0)
STRATEGY = {"waves": [1, 2], "orderBy": "ring", "minReadySeconds": 10, "maxFailures": 0,
            "onFailure": "rollback"}


class Recorder:
    def __init__(self) -> None:
        self.topics: list[str] = []

    def publish(self, topic: str, payload: bytes, *, retain: bool = False, qos: int = 1) -> None:
        self.topics.append(topic)


@pytest.fixture
def cloud(make_settings: Any, clock: Clock) -> Any:
    with Cloud(make_settings(rollout_poll_seconds=3600), clock=clock) as opened:
        yield opened  # the test takes every step itself


@pytest.fixture
def published(cloud: Cloud) -> Recorder:
    recorder = Recorder()
    AGENT_SUBJECT.configure(lambda: recorder, topics=cloud.settings.topics,
                            limits=cloud.settings.limits)
    return recorder


@pytest.fixture
def fleet(cloud: Cloud, api: httpx.Client, clock: Clock, tmp_path: Path) -> list[str]:
    """Six nodes online running agent 1.0.0; n0-n4 have it as their target, n5 none."""
    for version in ("1.0.0", "2.0.0"):
        wheel = pack_running(tmp_path / version, version=version)
        assert api.put("/v1/agent/wheels", content=wheel.read_bytes()).status_code == 200
    for node in NODES:
        labels = {"ring": "0" if node == "n5" else "1"}
        assert api.post(f"{NS}/nodes", json={"name": node, "labels": labels}).status_code == 201
    assert api.post(f"{NS}/agent/upgrade", json={"version": "1.0.0", "nodes": NODES[:5]}
                    ).json()["updated"] == NODES[:5]
    write_batch(cloud.store, [Presence("default", n, online=True) for n in NODES], now=0,
                limits=cloud.settings.limits)
    report(cloud, clock, NODES, {"version": "1.0.0", "state": "Running"})
    return NODES


def report(cloud: Cloud, clock: Clock, nodes: list[str], agent: dict[str, str]) -> None:
    body = {"state": {"reported": {"sysapps": {"tether": agent}}}}
    ops = [Update("default", node, request=parse_update_request(body, writable=("reported",)))
           for node in nodes]
    write_batch(cloud.store, ops, now=int(clock.now), limits=cloud.settings.limits)
    assert all(op.error is None for op in ops)


def targets(api: httpx.Client) -> dict[str, str | None]:
    out = {}
    for node in NODES:
        desired = api.get(f"{NS}/nodes/{node}/shadow").json()["state"]["desired"]
        target = (desired.get("sysapps") or {}).get("tether")
        out[node] = target["version"] if target else None
    return out


def step(cloud: Cloud, clock: Clock, seconds: float = 0) -> None:
    clock.now += seconds
    cloud.rollouts.run_once()


def start(api: httpx.Client, version: str, strategy: dict[str, Any] = STRATEGY) -> None:
    done = api.post(f"{NS}/agent/upgrade", json={"version": version, "rollout": strategy})
    assert done.status_code == 200, done.text
    assert done.json()["updated"] == [] and done.json()["rollout"]["phase"] == "progressing"


def test_a_version_nodes_roll_back_stops_at_the_first_wave_and_is_undone(
    cloud: Cloud, api: httpx.Client, clock: Clock, fleet: list[str], published: Recorder,
) -> None:
    before = targets(api)
    start(api, "2.0.0")
    assert targets(api) == before  # nobody moves before the driver admits wave 1
    step(cloud, clock)
    assert [n for n, v in targets(api).items() if v == "2.0.0"] == ["n5"]  # the canary
    assert any("/n5/" in topic and topic.endswith("delta") for topic in published.topics)
    report(cloud, clock, ["n5"], {"version": "1.0.0", "state": "RolledBack", "target": "2.0.0",
                                  "cause": "probe failed"})
    step(cloud, clock, 1)
    status = api.get(f"{NS}/agent/rollout").json()
    assert status["phase"] == "rolledBack" and "probe failed" in status["message"]
    assert status["nodes"] == {"n5": {"wave": 1, "outcome": "failed", "cause": "probe failed"}}
    assert targets(api) == before == {**{n: "1.0.0" for n in NODES[:5]}, "n5": None}
    for _ in range(3):  # rolled back for good: no later wave
        step(cloud, clock, 60)
    assert targets(api) == before
    history = api.get(f"{NS}/nodes/n5/shadow/history").json()
    assert any(entry.get("writer") == "rollout:tether" for entry in history.get("items", []))


def test_a_good_version_goes_through_every_wave_in_order(
    cloud: Cloud, api: httpx.Client, clock: Clock, fleet: list[str], published: Recorder,
) -> None:
    start(api, "2.0.0")
    reached: list[list[str]] = []
    for _ in range(10):
        step(cloud, clock, 11)
        now = sorted(n for n, v in targets(api).items() if v == "2.0.0")
        if not reached or now != reached[-1]:
            reached.append(now)
        report(cloud, clock, now, {"version": "2.0.0", "state": "Running"})
        if api.get(f"{NS}/agent/rollout").json()["phase"] == "complete":
            break
    assert reached == [["n5"], ["n0", "n1", "n5"], NODES]  # 1, then 2, then the rest
    status = api.get(f"{NS}/agent/rollout").json()
    assert status["phase"] == "complete" and status["target"] == "2.0.0"
    assert {e["outcome"] for e in status["nodes"].values()} == {"ready"}
    assert "subject" not in status["strategy"]


def test_pause_resume_and_undo_from_the_cli(
    cloud: Cloud, api: httpx.Client, api_url: str, clock: Clock, fleet: list[str],
    published: Recorder,
) -> None:
    from cloud_api.admin.agent import app as agent_app
    flags = ["--server", api_url, "--token", admin_token(cloud)]
    runner = CliRunner()
    result = runner.invoke(agent_app, ["rollout", "pause", *flags])
    assert result.exit_code == 1 and "tether agent upgrade VERSION --waves" in result.output
    result = runner.invoke(agent_app, ["upgrade", "2.0.0", "--waves", "1,50%", "--min-ready",
                                       "0", "--on-failure", "pause", "--order-by", "ring",
                                       *flags])
    assert result.exit_code == 0 and "rollout to 6 nodes progressing" in result.output, \
        result.output
    step(cloud, clock)
    result = runner.invoke(agent_app, ["rollout", "pause", *flags])
    assert result.exit_code == 0 and result.output.startswith("paused"), result.output
    report(cloud, clock, ["n5"], {"version": "2.0.0", "state": "Running"})
    for _ in range(3):
        step(cloud, clock, 5)
    assert [n for n, v in targets(api).items() if v == "2.0.0"] == ["n5"]  # held while paused
    result = runner.invoke(agent_app, ["rollout", "resume", *flags])
    assert result.exit_code == 0 and result.output.startswith("progressing"), result.output
    step(cloud, clock, 5)
    step(cloud, clock, 5)
    assert sorted(n for n, v in targets(api).items() if v == "2.0.0") == ["n0", "n1", "n2", "n5"]
    result = runner.invoke(agent_app, ["rollout", "status", *flags], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "n5" in result.output and "ready" in result.output
    result = runner.invoke(agent_app, ["rollout", "undo", *flags])
    assert result.exit_code == 0 and result.output.startswith("rolledBack"), result.output
    assert targets(api) == {**{n: "1.0.0" for n in NODES[:5]}, "n5": None}
    result = runner.invoke(agent_app, ["rollout", "bogus", *flags])
    assert result.exit_code == 1 and "use status, pause, resume or undo" in result.output
    cleared = api.post(f"{NS}/agent/upgrade", json={"version": None, "rollout": STRATEGY})
    assert cleared.status_code == 400 and "needs a version" in cleared.json()["message"]
    result = runner.invoke(agent_app, ["upgrade", "2.0.0", "--node", "n0", *flags])
    assert result.exit_code == 0 and "1 of 1 nodes updated" in result.output, result.output
    assert api.get(f"{NS}/agent/rollout").status_code == 404  # at once: the rollout is over
    result = runner.invoke(agent_app, ["rollout", "bogus", *flags])
    assert result.exit_code == 1 and "use status, pause, resume or undo" in result.output
