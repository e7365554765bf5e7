"""The wave engine's pure core (``services.waves``): sizes, order, judging a node, and whole
rollouts simulated step by step -- no database, no clock, no broker."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud_api.services.waves import (
    NodeRecord,
    Observation,
    Outcome,
    Phase,
    RolloutState,
    amount,
    failure_limit,
    judge,
    order_nodes,
    pinned_value,
    step,
    wave_size,
)
from schemas.resources import RolloutStrategy


def strategy(**fields: Any) -> RolloutStrategy:
    return RolloutStrategy.model_validate({"waves": [1, "25%"], "minReadySeconds": 10, **fields})


RUNNING = Observation(online=True, value="2", status_of="2", status="Running")


@pytest.mark.parametrize(("value", "total", "expected"), [
    (3, 100, 3), ("10%", 100, 10), ("1%", 20, 1), ("25%", 10, 3), ("0%", 10, 0), ("100%", 7, 7),
])
def test_amounts(value: int | str, total: int, expected: int) -> None:
    assert amount(value, total) == expected


@pytest.mark.parametrize("bad", ["-1", "abc", "101%", "5.5%", -2])
def test_a_bad_wave_size_is_refused(bad: Any) -> None:
    with pytest.raises(ValueError, match="count|percentage"):
        RolloutStrategy.model_validate({"waves": [bad]})


def test_sizes_and_limits() -> None:
    plan = strategy(waves=[1, "10%", 0], maxFailures="10%")
    assert [wave_size(plan, wave, 40) for wave in range(4)] == [1, 4, 1, None]
    assert failure_limit(plan, 40) == 4 and failure_limit(strategy(maxFailures=2), 40) == 2


def test_labelled_nodes_go_first_in_label_order() -> None:
    labels = {"a": {}, "b": {"ring": "1"}, "c": {"ring": "0"}, "d": {"ring": "1"}}
    assert order_nodes(labels, "ring") == ["c", "b", "d", "a"]
    assert order_nodes(labels, None) == ["a", "b", "c", "d"]


@given(st.dictionaries(st.text("abcdef", min_size=1, max_size=4),
                       st.dictionaries(st.sampled_from(["ring", "zone"]), st.text("01", max_size=2)),
                       max_size=30))
def test_order_is_a_permutation_with_labelled_nodes_first(labels: dict[str, dict[str, str]]) -> None:
    ordered = order_nodes(labels, "ring")
    assert sorted(ordered) == sorted(labels)
    flags = ["ring" not in labels[node] for node in ordered]
    assert flags == sorted(flags)


# -- judging one node -------------------------------------------------------------------------
def admitted(at: int = 0, **fields: Any) -> NodeRecord:
    return NodeRecord(node="n", wave=0, admitted_at=at, **fields)


def test_ready_after_min_ready_seconds_of_running() -> None:
    plan = strategy()
    first = judge(admitted(), RUNNING, target="2", strategy=plan, now=5)
    assert first.outcome is Outcome.PENDING and first.running_since == 5
    assert judge(first, RUNNING, target="2", strategy=plan, now=14).outcome is Outcome.PENDING
    assert judge(first, RUNNING, target="2", strategy=plan, now=15).outcome is Outcome.READY


@pytest.mark.parametrize(("seen", "cause"), [
    (Observation(online=True, value="1", status_of="2", status="Failed", cause="pull failed"),
     "pull failed"),
    (Observation(online=True, value="2", status_of="2", status="Failed"), "reported version 2 Failed"),
])
def test_a_failed_report_of_the_target_fails_the_node(seen: Observation, cause: str) -> None:
    judged = judge(admitted(), seen, target="2", strategy=strategy(), now=1)
    assert (judged.outcome, judged.cause) == (Outcome.FAILED, cause)


def test_a_failed_report_of_the_old_version_is_not_the_new_ones() -> None:
    seen = Observation(online=True, value="1", status_of="1", status="Failed")
    assert judge(admitted(), seen, target="2", strategy=strategy(), now=1).outcome is Outcome.PENDING


def test_a_restart_while_proving_itself_is_a_restart_loop() -> None:
    first = judge(admitted(), RUNNING, target="2", strategy=strategy(), now=1)
    again = Observation(online=True, value="2", status_of="2", status="Running", restarts=1)
    judged = judge(first, again, target="2", strategy=strategy(), now=3)
    assert judged.outcome is Outcome.FAILED and "restarted 1 time(s)" in judged.cause


def test_running_is_proved_again_after_a_blip() -> None:
    plan = strategy()
    first = judge(admitted(), RUNNING, target="2", strategy=plan, now=1)
    pending = Observation(online=True, value="2", status_of="2", status="Pending")
    blip = judge(first, pending, target="2", strategy=plan, now=5)
    assert blip.running_since is None
    assert judge(blip, RUNNING, target="2", strategy=plan, now=12).running_since == 12


def test_offline_nodes_time_out_and_are_judged_when_they_return() -> None:
    plan = strategy(offlineTimeoutSeconds=60, progressDeadlineSeconds=100)
    offline = Observation(online=False)
    assert judge(admitted(), offline, target="2", strategy=plan, now=59).outcome is Outcome.PENDING
    timed_out = judge(admitted(), offline, target="2", strategy=plan, now=60)
    assert timed_out.outcome is Outcome.TIMED_OUT and "offline" in timed_out.cause
    back = Observation(online=True, value="1", status_of="1", status="Running")
    assert judge(timed_out, back, target="2", strategy=plan, now=500).outcome is Outcome.TIMED_OUT
    running = judge(timed_out, RUNNING, target="2", strategy=plan, now=501)
    assert judge(running, RUNNING, target="2", strategy=plan, now=511).outcome is Outcome.READY


def test_a_node_that_never_runs_it_fails_at_the_deadline() -> None:
    plan = strategy(progressDeadlineSeconds=100)
    stuck = Observation(online=True, value="1", status_of="2", status="Pending")
    assert judge(admitted(), stuck, target="2", strategy=plan, now=99).outcome is Outcome.PENDING
    judged = judge(admitted(), stuck, target="2", strategy=plan, now=100)
    assert judged.outcome is Outcome.FAILED and "within 100s (Pending)" in judged.cause


# -- whole rollouts ---------------------------------------------------------------------------
def simulate(nodes: list[str], plan: RolloutStrategy, *, crashing: set[str] = frozenset(),
             steps: int = 200) -> tuple[RolloutState, list[list[str]], dict[str, NodeRecord]]:
    """Run a rollout to its end: admitted nodes run the target at once (``crashing`` ones
    report it Failed); a step every 5 s."""
    state = RolloutState(phase=Phase.PROGRESSING, target="2")
    records: dict[str, NodeRecord] = {}
    waves: list[list[str]] = []
    for tick in range(steps):
        seen = {node: Observation(online=True, value="2", status_of="2",
                                  status="Failed" if node in crashing else "Running")
                for node in records}
        candidates = [node for node in nodes if node not in records]
        decision = step(state, records, seen, candidates=candidates, total=len(nodes),
                        strategy=plan, now=tick * 5)
        records.update(decision.records)
        if decision.admit:
            waves.append(decision.admit)
        state = decision.state
        if state.phase not in (Phase.PROGRESSING,):
            break
    return state, waves, records


@settings(max_examples=60, deadline=None)
@given(total=st.integers(1, 60),
       waves=st.lists(st.one_of(st.integers(0, 10), st.integers(0, 100).map(lambda p: f"{p}%")),
                      min_size=1, max_size=5))
def test_a_healthy_rollout_admits_every_node_once_in_the_planned_waves(
    total: int, waves: list[int | str]
) -> None:
    nodes = [f"n{i:02d}" for i in range(total)]
    plan = strategy(waves=waves, minReadySeconds=10)
    state, admitted_waves, records = simulate(nodes, plan)
    assert state.phase is Phase.COMPLETE
    flat = [node for wave in admitted_waves for node in wave]
    assert flat == nodes  # each once, in order
    left = total
    for index, wave in enumerate(admitted_waves):
        size = wave_size(plan, index, total)
        assert len(wave) == (left if size is None else min(size, left))
        left -= len(wave)
    assert all(record.outcome is Outcome.READY for record in records.values())


@settings(max_examples=60, deadline=None)
@given(total=st.integers(2, 40), bad=st.integers(0, 39), max_failures=st.integers(0, 3))
def test_a_crash_past_max_failures_stops_the_rollout_in_the_wave_it_shows(
    total: int, bad: int, max_failures: int
) -> None:
    nodes = [f"n{i:02d}" for i in range(total)]
    crashing = {nodes[i] for i in range(bad % total, total)}  # from some node on, all crash
    plan = strategy(waves=[1, "20%"], maxFailures=max_failures)
    state, waves, records = simulate(nodes, plan, crashing=crashing)
    failed = [node for node, record in records.items() if record.outcome is Outcome.FAILED]
    if len(crashing) > max_failures:
        assert state.phase is Phase.ROLLED_BACK and len(failed) > max_failures
        # no wave was admitted after the one where the limit was crossed
        last_wave = max(records[node].wave for node in failed)
        assert len(waves) == last_wave + 1
    else:
        assert state.phase is Phase.COMPLETE


def test_pause_on_failure_and_resume_past_acknowledged_failures() -> None:
    plan = strategy(onFailure="pause", waves=[1, 1])
    state = RolloutState(phase=Phase.PROGRESSING, target="2", wave=0)
    records = {"a": NodeRecord(node="a", wave=0, admitted_at=0)}
    failed = {"a": Observation(online=True, value="2", status_of="2", status="Failed")}
    decision = step(state, records, failed, candidates=["b", "c"], total=3, strategy=plan, now=1)
    assert decision.state.phase is Phase.PAUSED and decision.admit == []
    resumed = RolloutState(phase=Phase.PROGRESSING, target="2", wave=0, acknowledged=1)
    records.update(decision.records)
    decision = step(resumed, records, failed, candidates=["b", "c"], total=3, strategy=plan, now=2)
    assert decision.admit == ["b"] and decision.state.wave == 1


@pytest.mark.parametrize(("phase", "admitted_node", "expected"), [
    (Phase.PROGRESSING, True, "2"), (Phase.PROGRESSING, False, "1"), (Phase.PAUSED, True, "2"),
    (Phase.ROLLED_BACK, True, "1"), (Phase.COMPLETE, False, "2"),
])
def test_pinned_values(phase: Phase, admitted_node: bool, expected: str) -> None:
    assert pinned_value(phase, admitted=admitted_node, target="2", stable="1") == expected
    if phase is Phase.ROLLED_BACK:  # a first version rolled back: the node holds none
        assert pinned_value(phase, admitted=True, target="2", stable=None) is None


@pytest.mark.parametrize("stats", [
    None, "x", {"instances": "x"}, {"instances": [{"restarts": "7"}, 3, None]},
    {"status": 5, "version": ["a"], "cause": {"deep": 1}},
])
def test_malformed_reports_are_nothing_not_a_crash(stats: Any) -> None:
    from cloud_api.services.rollout_waves import _observation
    seen = _observation(True, "2", stats)
    assert seen.restarts == 0 and (seen.status is None or isinstance(seen.status, str))
    judge(admitted(), seen, target="2", strategy=strategy(), now=1)
