"""The wave engine's pure core: which nodes go next, and whether a wave is healthy.

Why it exists: a rollout is decided from what nodes report (DESIGN §11), and that decision
must be testable without a database, a broker or a clock. Everything here is data in,
data out; ``services.rollout_waves`` reads the state and the reports, calls ``step`` and
stores what it returns.

It knows nothing of apps. A rollout drives *a value per node* (an app's version, an
agent's version, ...) from ``stable`` to ``target``; nodes report an ``Observation`` of
that value (what they run, its status, how often it restarted). The same ``step`` gates
any such value on the nodes' reports.

One ``step`` of a rollout:

1. every node admitted and not yet judged is judged (``judge``): ``ready`` once it reports
   the target ``Running`` for ``min_ready_seconds`` with no restart since it first ran;
   ``failed`` if it reports the target ``Failed``, restarts it, or does not run it within
   ``progress_deadline_seconds``; ``timedOut`` while offline past
   ``offline_timeout_seconds`` (it no longer holds the wave, and is judged again when it
   returns);
2. past ``max_failures`` (failures since the last resume), the rollout pauses or rolls
   back (``on_failure``);
3. when every node of the admitted waves is judged, the next wave is admitted: the next
   ``wave_size`` nodes in ``order_nodes`` order; with none left the rollout is complete.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from schemas.resources import OnFailure, RolloutStrategy


class Phase(StrEnum):
    """Where a rollout stands."""

    PROGRESSING = "progressing"
    PAUSED = "paused"
    COMPLETE = "complete"
    ROLLED_BACK = "rolledBack"


ACTIVE = (Phase.PROGRESSING, Phase.PAUSED)


class Outcome(StrEnum):
    """What a node of a wave came to."""

    PENDING = "pending"
    READY = "ready"
    FAILED = "failed"
    TIMED_OUT = "timedOut"


@dataclass(frozen=True)
class Observation:
    """What a node reports of the value a rollout drives."""

    online: bool
    value: str | None = None  # what it runs (``reported.apps.NAME``)
    status_of: str | None = None  # the version its status is about (``appstats.NAME.version``)
    status: str | None = None  # Running, Failed, Pending, ...
    restarts: int = 0
    cause: str = ""


@dataclass(frozen=True)
class NodeRecord:
    """One admitted node, as stored: its wave and what it came to so far."""

    node: str
    wave: int
    admitted_at: int
    outcome: Outcome = Outcome.PENDING
    running_since: int | None = None  # first seen running the target, this stretch
    restarts: int | None = None  # restarts when first seen running the target
    cause: str = ""


@dataclass(frozen=True)
class RolloutState:
    phase: Phase
    target: str
    wave: int = -1  # the last wave admitted; -1 before the first
    acknowledged: int = 0  # failures an operator resumed past
    message: str = ""


@dataclass
class Decision:
    """What ``step`` decided: the new state, node records changed, nodes to admit."""

    state: RolloutState
    records: dict[str, NodeRecord] = field(default_factory=dict)
    admit: list[str] = field(default_factory=list)
    changed: bool = False  # the state moved (a new wave, a pause, a rollback, the end)


# -- sizes and order ----------------------------------------------------------------------
def amount(value: int | str, total: int) -> int:
    """A count, or a percentage of ``total`` rounded up (so "1%" of 20 is one node)."""
    if isinstance(value, int):
        return value
    percent = int(value.rstrip("%"))
    return -(-percent * total // 100)


def wave_size(strategy: RolloutStrategy, wave: int, total: int) -> int | None:
    """How many nodes wave ``wave`` (0-based) admits; None for the final wave (the rest)."""
    if wave >= len(strategy.waves):
        return None
    return max(1, amount(strategy.waves[wave], total))


def failure_limit(strategy: RolloutStrategy, total: int) -> int:
    """How many failures are tolerated (more is past ``max_failures``)."""
    value = strategy.max_failures
    return value if isinstance(value, int) else int(value.rstrip("%")) * total // 100


def order_nodes(labels: Mapping[str, Mapping[str, str]], order_by: str | None) -> list[str]:
    """Nodes in the order waves take them: by the value of label ``order_by`` (nodes
    without it last), then by name."""
    if order_by is None:
        return sorted(labels)
    return sorted(labels, key=lambda node: (order_by not in labels[node],
                                            labels[node].get(order_by, ""), node))


# -- judging one node ---------------------------------------------------------------------
def judge(
    record: NodeRecord, seen: Observation | None, *, target: str, strategy: RolloutStrategy,
    now: int,
) -> NodeRecord:
    """The record of an admitted node after looking at what it reports now."""
    if record.outcome in (Outcome.READY, Outcome.FAILED):
        return record  # judged for good; a later crash of a ready node is the next rollout's
    if seen is None or not seen.online:
        if now - record.admitted_at >= strategy.offline_timeout_seconds:
            return replace(record, outcome=Outcome.TIMED_OUT, running_since=None,
                           cause=f"offline for more than {strategy.offline_timeout_seconds}s")
        return replace(record, running_since=None)
    about_target = seen.status_of == target or (seen.status_of is None and seen.value == target)
    if about_target and seen.status == "Failed":
        return replace(record, outcome=Outcome.FAILED,
                       cause=seen.cause or f"reported version {target} Failed")
    if seen.value == target and seen.status == "Running":
        if record.running_since is None:
            return replace(record, running_since=now, restarts=seen.restarts)
        if record.restarts is not None and seen.restarts > record.restarts:
            return replace(record, outcome=Outcome.FAILED,
                           cause=f"restarted {seen.restarts - record.restarts} time(s) "
                                 f"within {strategy.min_ready_seconds}s")
        if now - record.running_since >= strategy.min_ready_seconds:
            return replace(record, outcome=Outcome.READY, cause="")
        return record
    if record.outcome is Outcome.TIMED_OUT:  # back, and not running it yet: give it time
        return replace(record, running_since=None)
    if now - record.admitted_at >= strategy.progress_deadline_seconds:
        return replace(record, outcome=Outcome.FAILED,
                       cause=f"not running version {target} within "
                             f"{strategy.progress_deadline_seconds}s ({seen.status or 'no status'})")
    return replace(record, running_since=None, outcome=Outcome.PENDING)


# -- one step of a rollout ----------------------------------------------------------------
def step(
    state: RolloutState,
    records: Mapping[str, NodeRecord],
    observations: Mapping[str, Observation],
    *,
    candidates: Sequence[str],
    total: int,
    strategy: RolloutStrategy,
    now: int,
) -> Decision:
    """One look at a rollout (see the module docstring).

    ``records`` are the nodes admitted so far, ``candidates`` the matched nodes not yet
    admitted, in wave order, ``total`` the nodes the rollout targets (for percentages).
    """
    decision = Decision(state=state)
    if state.phase not in ACTIVE:
        return decision
    judged = {}
    for node, record in records.items():
        new = judge(record, observations.get(node), target=state.target, strategy=strategy, now=now)
        if new != record:
            decision.records[node] = new
        judged[node] = new
    failed = sorted(node for node, record in judged.items() if record.outcome is Outcome.FAILED)
    if len(failed) - state.acknowledged > failure_limit(strategy, total):
        verb = "rolled back" if strategy.on_failure is OnFailure.ROLLBACK else "paused"
        message = (f"{verb} in wave {state.wave + 1}: {len(failed)} node(s) failed "
                   f"(maxFailures {strategy.max_failures}), e.g. {failed[0]}: "
                   f"{judged[failed[0]].cause}")
        phase = Phase.ROLLED_BACK if strategy.on_failure is OnFailure.ROLLBACK else Phase.PAUSED
        if state.phase is not phase:
            decision.state = replace(state, phase=phase, message=message)
            decision.changed = True
        return decision
    if state.phase is Phase.PAUSED:
        return decision
    if any(record.outcome is Outcome.PENDING for record in judged.values()):
        return decision
    if not candidates:
        decision.state = replace(state, phase=Phase.COMPLETE,
                                 message=f"complete: {len(judged)} node(s) in {state.wave + 1} wave(s)")
        decision.changed = True
        return decision
    wave = state.wave + 1
    size = wave_size(strategy, wave, total)
    decision.admit = list(candidates if size is None else candidates[:size])
    decision.state = replace(state, wave=wave, message=f"wave {wave + 1}: {len(decision.admit)} node(s)")
    decision.records.update({node: NodeRecord(node=node, wave=wave, admitted_at=now)
                             for node in decision.admit})
    decision.changed = True
    return decision


def pinned_value(phase: Phase, *, admitted: bool, target: str, stable: str | None) -> str | None:
    """The value a node should hold while a rollout is in ``phase`` (None: none at all)."""
    if phase is Phase.ROLLED_BACK:
        return stable
    if phase is Phase.COMPLETE:
        return target
    return target if admitted else stable
