"""What a native agent does when it starts in the middle of an upgrade: the state file and
the links decide, whichever step a SIGKILL interrupted (no processes: the decisions only)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_runtime.upgrading.home import LAUNCHER_ENV, AgentHome, Step, UpgradeState
from edge_runtime.upgrading.native import NativeUpgrader
from tests.edge_runtime.fakes import FakeClock

ARGV = ["run", "--data-dir", "/d"]


@pytest.fixture
def home(tmp_path: Path) -> AgentHome:
    home = AgentHome(tmp_path / "data")
    home.ensure()
    for version in ("1.0", "2.0"):
        (home.venv(version) / "bin").mkdir(parents=True)
    home.link(home.current, home.venv("1.0"))
    return home


def upgrader(home: AgentHome, version: str, clock: FakeClock) -> NativeUpgrader:
    return NativeUpgrader(home.root.parent, version=version, argv=ARGV,
                          prefix=home.venv(version), clock=clock)


def trial(home: AgentHome, *, deadline: float = 2000.0) -> UpgradeState:
    state = UpgradeState(step=Step.TRIAL, target={"version": "2.0", "deadlineSeconds": 30},
                         key="2.0||", previous="1.0", deadline=deadline, attempts=1)
    home.save(state)
    return state


def test_a_trial_not_yet_booted_is_booted(home: AgentHome) -> None:
    trial(home)
    home.link(home.trial, home.venv("2.0"))  # killed right after the link
    assert upgrader(home, "1.0", FakeClock()).boot() == [str(home.launcher), *ARGV]


def test_a_trial_whose_link_was_never_made_gets_it(home: AgentHome) -> None:
    trial(home)  # killed between the state file and the link
    assert upgrader(home, "1.0", FakeClock()).boot() == [str(home.launcher), *ARGV]
    assert home.points_at(home.trial, home.venv("2.0"))


def test_the_version_on_trial_is_a_candidate(home: AgentHome) -> None:
    trial(home)
    home.link(home.trying, home.venv("2.0"))  # the launcher booted it
    new = upgrader(home, "2.0", FakeClock())
    assert new.boot() is None
    assert new.report() == {"version": "2.0", "state": "Upgrading", "target": "2.0",
                            "cause": "on trial: commits once the cloud has its report"}


@pytest.mark.parametrize(("now", "cause"), [
    (1500.0, "version 2.0 stopped during its trial"),
    (2500.0, "version 2.0 did not report healthy within 30 s"),
])
def test_the_old_version_started_after_a_trial_rolls_back(
    home: AgentHome, now: float, cause: str
) -> None:
    trial(home)
    home.link(home.trying, home.venv("2.0"))  # booted, then crashed, hung or was killed
    old = upgrader(home, "1.0", FakeClock(now))
    assert old.boot() is None
    assert not home.trying.exists() and not home.venv("2.0").exists()
    state = json.loads(home.state_path.read_text())
    assert (state["step"], state["outcome"], state["cause"]) == ("done", "RolledBack", cause)
    old.desired({"sysapps": {"tether": {"version": "2.0"}}})
    assert old.report()["state"] == "RolledBack"  # and not tried again
    assert old._work() is None
    old.desired({"sysapps": {"tether": {"version": "1.0"}}})  # desired moves on ...
    assert old.report() == {"version": "1.0", "state": "Running", "deadlineSeconds": 120}
    old.desired({"sysapps": {"tether": {"version": "2.0"}}})  # ... and back: a new attempt
    assert old._work() is not None and old.report()["state"] == "Upgrading"


def test_a_commit_cut_short_is_finished(home: AgentHome) -> None:
    trial(home)
    home.link(home.trying, home.venv("2.0"))
    home.link(home.current, home.venv("2.0"))  # killed after swapping current
    assert upgrader(home, "1.0", FakeClock()).boot() == [str(home.launcher), *ARGV]
    new = upgrader(home, "2.0", FakeClock())
    assert new.boot() is None  # still a candidate: it commits again once healthy
    home.unlink(home.trying)  # killed after removing trying, before the state file
    assert upgrader(home, "2.0", FakeClock()).boot() is None
    assert json.loads(home.state_path.read_text())["outcome"] == "Running"


def test_a_managed_node_started_another_way_goes_through_the_launcher(
    home: AgentHome, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(LAUNCHER_ENV, raising=False)
    elsewhere = home.root.parent / "opt-venv"
    elsewhere.mkdir()
    old = NativeUpgrader(home.root.parent, version="0.9", argv=ARGV, prefix=elsewhere,
                         clock=FakeClock())
    assert old.boot() == [str(home.launcher), *ARGV]
    monkeypatch.setenv(LAUNCHER_ENV, str(home.launcher))
    assert upgrader(home, "1.0", FakeClock()).boot() is None


def test_the_launcher_is_plain_sh(home: AgentHome) -> None:
    text = home.launcher.read_text()
    assert text.startswith("#!/bin/sh\n") and "python\" -I -m edge_runtime" in text
    assert home.launcher.stat().st_mode & 0o111
