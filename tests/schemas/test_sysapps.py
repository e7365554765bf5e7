"""``desired.sysapps.tether`` and its report: what is accepted, what is refused, the gate."""

from __future__ import annotations

from typing import Any

import pytest

from schemas.sysapps import (
    AgentState,
    AgentTarget,
    BadTarget,
    desired_target,
    parse_target,
    reported_agent,
    upgraded,
)

SHA = "a" * 64


def test_a_target_round_trips() -> None:
    target = AgentTarget("1.2.0", url="https://c/v1/agent/wheels/x.whl", sha256=SHA,
                         image="reg/tether:1.2.0", deadline_seconds=60)
    assert parse_target(target.to_json()) == target
    assert desired_target({"sysapps": {"tether": target.to_json()}}) == target
    assert desired_target({}) is None and desired_target({"sysapps": {}}) is None


@pytest.mark.parametrize(("value", "problem"), [
    ("1.2.0", "must be an object"),
    ({}, "version must be"),
    ({"version": "../x"}, "version must be"),
    ({"version": "1/2"}, "version must be"),
    ({"version": "1", "wheel": "u"}, "wheel must be an object"),
    ({"version": "1", "wheel": {"url": "file:///x", "sha256": SHA}}, "http(s) URL"),
    ({"version": "1", "wheel": {"url": "http://c/x", "sha256": "AB"}}, "64 lower-case hex"),
    ({"version": "1", "deadlineSeconds": 0}, "deadlineSeconds"),
    ({"version": "1", "deadlineSeconds": True}, "deadlineSeconds"),
    ({"version": "1", "image": 3}, "image"),
])
def test_bad_targets_say_what_to_fix(value: Any, problem: str) -> None:
    with pytest.raises(BadTarget, match=problem.replace("(", r"\(").replace(")", r"\)")):
        parse_target(value)


@pytest.mark.parametrize(("agent", "gate"), [
    ({"version": "2", "state": "Running"}, True),
    ({"version": "2", "state": "Upgrading", "target": "2"}, None),
    ({"version": "1", "state": "Upgrading", "target": "2"}, None),
    ({"version": "1", "state": "RolledBack", "target": "2", "cause": "x"}, False),
    ({"version": "1", "state": "Failed", "target": "2", "cause": "x"}, False),
    ({"version": "1", "state": "RolledBack", "target": "3"}, None),
    ({"version": "1", "state": "Exploded"}, None),
    ({"state": "Running"}, None),
])
def test_the_gate_a_wave_engine_waits_on(agent: dict[str, Any], gate: bool | None) -> None:
    assert upgraded({"sysapps": {"tether": agent}}, "2") is gate


def test_reports_are_read_leniently() -> None:
    assert reported_agent({"sysapps": "x"}) is None
    report = reported_agent({"sysapps": {"tether": {"version": "1", "state": "Failed",
                                                     "cause": 5}}})
    assert report is not None and report.state is AgentState.FAILED and report.cause == ""


def test_a_node_on_its_target_mirrors_it_so_no_delta_stays() -> None:
    from schemas.shadow import compute_delta
    from schemas.sysapps import AgentReport, mirrored

    target = AgentTarget("2", url="http://c/w.whl", sha256=SHA, deadline_seconds=60)
    desired = {"sysapps": {"tether": target.to_json()}}
    running = {"sysapps": {"tether": mirrored(AgentReport("2"), target)}}
    assert compute_delta(desired, running) == {}
    behind = {"sysapps": {"tether": mirrored(AgentReport("1", AgentState.UPGRADING, "2"), target)}}
    assert behind["sysapps"]["tether"] == {"version": "1", "state": "Upgrading", "target": "2"}
    assert compute_delta(desired, behind) != {}
