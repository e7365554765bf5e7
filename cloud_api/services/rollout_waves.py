"""The wave engine against the database: what a rollout drives, and advancing rollouts.

Why it exists: ``services.waves`` decides, this module feeds it what is stored and
reported and stores what it decided. ``advance`` is called by the background
``cloud_api.rolling.RolloutDriver`` of every replica. A rollout is judged from a plain read,
then what changed is written in one transaction that holds its row locked (``FOR UPDATE
SKIP LOCKED`` on PostgreSQL, so a second replica skips it rather than waiting; SQLite's
one writer lock otherwise) and only if the rollout is still where it was read: only one
replica moves a rollout at a time, and a restarted cloud takes it up from its rows.

What a rollout drives is a ``Subject``: where nodes come from (``scope``), what they report
(``observe``), and how their desired value is set (``assign``). ``AppSubject`` is the one
for ``desired.apps.NAME``: it assigns by owing a match of the nodes
(``services.matching.request_match``) -- matching reads the rollout's pins
(``rollout_state.app_pins``) -- so the write goes through the batched path, in the same
transaction as the decision, and survives a crash. Another value (the agent's own
version) plugs in with its own ``Subject`` under another ``kind``: ``register("sysapp",
AgentSubject())``, and a rollout of it starts with ``rollout_state.version_written(...,
kind="sysapp")``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Connection, and_, bindparam, insert, select, update
from sqlmodel import Session

from cloud_api.errors import NotFound
from cloud_api.services.matching import request_match
from cloud_api.services.resources import get_resource
from cloud_api.services.rollout_state import APP_KIND, ROLLOUT_NODES, ROLLOUTS, SUBJECT_KEY
from cloud_api.services.waves import (
    ACTIVE,
    NodeRecord,
    Observation,
    Outcome,
    Phase,
    RolloutState,
    order_nodes,
    step,
)
from cloud_api.store.engine import Store, table_of
from cloud_api.store.models import Node, Shadow
from schemas.labels import match_all, parse_selector
from schemas.resources import ResourceKind, RolloutStrategy
from schemas.shadow import APPS_KEY

log = logging.getLogger(__name__)
_SHADOWS, _NODES = table_of(Shadow), table_of(Node)
_UPDATE_NODE = (
    update(ROLLOUT_NODES)
    .where(ROLLOUT_NODES.c.namespace == bindparam("b_namespace"),
           ROLLOUT_NODES.c.kind == bindparam("b_kind"), ROLLOUT_NODES.c.name == bindparam("b_name"),
           ROLLOUT_NODES.c.node == bindparam("b_node"))
    .values({column: bindparam(f"b_{column}") for column in (
        "wave", "admitted_at", "outcome", "running_since", "restarts", "cause")})
)


AfterCommit = Callable[[], None]


class Subject(Protocol):
    """A value rolled out per node: the wave engine's port to what it drives."""

    def scope(self, session: Session, namespace: str, name: str) -> dict[str, dict[str, str]]:
        """The nodes that should hold the value, with their labels (for ``orderBy``)."""
        ...

    def observe(
        self, session: Session, namespace: str, name: str, nodes: Collection[str]
    ) -> dict[str, Observation]:
        """What each of ``nodes`` reports of the value (a node missing: nothing known)."""
        ...

    def assign(self, session: Session, namespace: str, name: str, nodes: Collection[str], *,
               now: int) -> AfterCommit | None:
        """Make the desired value of ``nodes`` what the rollout's rows now say
        (``rollout_state`` / ``waves.pinned_value``), in the session's transaction (the
        caller commits); what to do once it is committed (publish the deltas, say), if
        anything. A subject that writes shadows itself does it here with
        ``store.shadow_writing.read_documents``/``swap_documents`` on
        ``session.connection()``, and publishes in the action it returns."""
        ...


class AppSubject:
    """``desired.apps.NAME``, reported as ``reported.apps.NAME`` and ``appstats.NAME``."""

    def scope(self, session: Session, namespace: str, name: str) -> dict[str, dict[str, str]]:
        app, _ = get_resource(session, namespace, ResourceKind.APP, name)
        labels = {node: node_labels or {} for node, node_labels in session.connection().execute(
            select(_NODES.c.name, _NODES.c.labels).where(_NODES.c.namespace == namespace))}
        matched = match_all({name: parse_selector(app.selector)}, labels)
        return {node: labels[node] for node, apps in matched.items() if name in apps}

    def observe(
        self, session: Session, namespace: str, name: str, nodes: Collection[str]
    ) -> dict[str, Observation]:
        if not nodes:
            return {}
        query = (
            select(_SHADOWS.c.node, _SHADOWS.c.reported[(APPS_KEY, name)].as_string(),
                   _SHADOWS.c.reported[("appstats", name)], _NODES.c.online)
            .join(_NODES, and_(_NODES.c.namespace == _SHADOWS.c.namespace,
                               _NODES.c.name == _SHADOWS.c.node))
            .where(_SHADOWS.c.namespace == namespace, _SHADOWS.c.node.in_(sorted(set(nodes))))
        )
        return {node: _observation(bool(online), value, stats)
                for node, value, stats, online in session.connection().execute(query)}

    def assign(self, session: Session, namespace: str, name: str, nodes: Collection[str], *,
               now: int) -> AfterCommit | None:
        if nodes:  # matching writes them, through the batched path (the driver tells it)
            request_match(session, namespace, nodes, now=now)
        return None


def _observation(online: bool, value: str | None, stats: Any) -> Observation:
    stats = stats if isinstance(stats, dict) else {}
    instances = stats.get("instances")
    # what a node reports is input: anything malformed counts as nothing, never raises
    restarts = sum(i["restarts"] for i in instances if isinstance(i, dict)
                   and isinstance(i.get("restarts"), int)) if isinstance(instances, list) else 0
    status_of, status = stats.get("version"), stats.get("status")
    return Observation(online=online, value=value,
                       status_of=str(status_of) if status_of is not None else None,
                       status=status if isinstance(status, str) else None, restarts=restarts,
                       cause=str(stats.get("cause") or "")[:500])


SUBJECTS: dict[str, Subject] = {APP_KIND: AppSubject()}
"""What each ``kind`` of rollout drives; ``register`` adds one (at import of its module)."""


def register(kind: str, subject: Subject) -> None:
    """Drive rollouts of ``kind`` with ``subject`` (every replica's loop picks it up).

    A rollout of that kind starts when ``rollout_state.version_written(..., kind=kind)``
    is called in the transaction that stores the new target value; ``rollout_control``'s
    ``pause``/``resume``/``undo``/``rollout_of`` take ``kind=`` too."""
    SUBJECTS[kind] = subject


# -- advancing ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Advanced:
    """A rollout that moved: its key, its new phase, and what it says."""

    namespace: str
    kind: str
    name: str
    phase: Phase
    message: str
    assigned: int  # nodes whose desired value was changed (or owed)


@contextmanager
def locked(store: Store) -> Iterator[Session]:
    """A session in one transaction, holding the write lock on SQLite; committed when the
    block ends without an error (the session only flushes: the connection owns the
    transaction), rolled back otherwise."""
    with store.write_transaction() as connection:  # ours, not the session's: it outlives it
        with Session(bind=connection) as session:
            yield session
            session.flush()
        connection.commit()


def read_row(connection: Connection, key: tuple[str, str, str], *, lock: str | None) -> Any:
    """A rollout's row; ``lock`` "skip" (None if another holds it) or "wait" takes its
    row lock on PostgreSQL (on SQLite, ``_locked`` already holds the writer lock)."""
    query = select(ROLLOUTS).where(ROLLOUTS.c.namespace == key[0], ROLLOUTS.c.kind == key[1],
                                   ROLLOUTS.c.name == key[2])
    if lock is not None and connection.dialect.name != "sqlite":
        query = query.with_for_update(skip_locked=lock == "skip")
    return connection.execute(query).mappings().one_or_none()


def read_records(connection: Connection, key: tuple[str, str, str]) -> dict[str, NodeRecord]:
    rows = connection.execute(select(ROLLOUT_NODES).where(
        ROLLOUT_NODES.c.namespace == key[0], ROLLOUT_NODES.c.kind == key[1],
        ROLLOUT_NODES.c.name == key[2])).mappings()
    return {row["node"]: NodeRecord(node=row["node"], wave=row["wave"],
                                    admitted_at=row["admitted_at"], outcome=Outcome(row["outcome"]),
                                    running_since=row["running_since"], restarts=row["restarts"],
                                    cause=row["cause"] or "")
            for row in rows}


def _store_records(connection: Connection, key: tuple[str, str, str],
                   records: Mapping[str, NodeRecord], new: Collection[str]) -> None:
    def values(record: NodeRecord) -> dict[str, Any]:
        return {"wave": record.wave, "admitted_at": record.admitted_at,
                "outcome": record.outcome.value, "running_since": record.running_since,
                "restarts": record.restarts, "cause": record.cause}

    keyed = {"namespace": key[0], "kind": key[1], "name": key[2]}
    inserts = [{**keyed, "node": node, **values(r)} for node, r in records.items() if node in new]
    if inserts:
        connection.execute(insert(ROLLOUT_NODES), inserts)
    updates = [{"b_node": node, **{f"b_{k}": v for k, v in values(record).items()}}
               for node, record in sorted(records.items()) if node not in new]
    if updates:  # one executemany: a wave of thousands is judged in one statement
        connection.execute(_UPDATE_NODE, [{"b_namespace": key[0], "b_kind": key[1],
                                           "b_name": key[2], **row} for row in updates])


def advance(store: Store, *, now: int, subjects: Mapping[str, Subject] = SUBJECTS) -> list[Advanced]:
    """Take one step of every active rollout this replica can lock; those that moved."""
    with store.connect() as connection:
        keys = [tuple(row) for row in connection.execute(
            select(ROLLOUTS.c.namespace, ROLLOUTS.c.kind, ROLLOUTS.c.name)
            .where(ROLLOUTS.c.phase.in_([phase.value for phase in ACTIVE])))]
    moved = []
    for namespace, kind, name in keys:
        subject = subjects.get(kind)
        if subject is None:
            continue  # a kind this cloud does not drive (an older replica, say)
        try:
            done = _advance_one(store, (namespace, kind, name), subject, now=now)
        except Exception:  # one rollout's trouble must not stop the others
            log.exception("cannot advance the rollout of %s %s/%s; retrying", kind, namespace, name)
            continue
        if done is not None:
            moved.append(done)
    return moved


def _advance_one(store: Store, key: tuple[str, str, str], subject: Subject, *,
                 now: int) -> Advanced | None:
    """Judge without a lock (reading 10,000 nodes' reports must not hold SQLite's one
    writer lock), then write what changed under the rollout's lock, if the rollout is still
    where it was read (phase, wave, target, failures accepted): else another replica or an
    operator moved it, and the next look starts again from what they wrote."""
    with store.session() as session:
        connection = session.connection()
        row = read_row(connection, key, lock=None)
        if row is None or Phase(row["phase"]) not in ACTIVE:
            return None
        strategy = RolloutStrategy.model_validate(
            {k: v for k, v in row["strategy"].items() if k != SUBJECT_KEY})
        try:
            scope = subject.scope(session, key[0], key[2])
        except NotFound:  # the app went away; deleting it forgets the rollout anyway
            return None
        records = {node: record for node, record in read_records(connection, key).items()
                   if node in scope}
        candidates = order_nodes({node: labels for node, labels in scope.items()
                                  if node not in records}, strategy.order_by)
        state = RolloutState(phase=Phase(row["phase"]), target=row["target"], wave=row["wave"],
                             acknowledged=row["acknowledged"], message=row["message"])
        open_ = [node for node, record in records.items()  # the judged stay judged
                 if record.outcome in (Outcome.PENDING, Outcome.TIMED_OUT)]
        observations = subject.observe(session, key[0], key[2], open_)
    decision = step(state, records, observations, candidates=candidates,
                    total=len(records) + len(candidates), strategy=strategy, now=now)
    if not decision.changed and not decision.records:
        return None
    assigned: Collection[str] = decision.admit
    if decision.changed and decision.state.phase in (Phase.ROLLED_BACK, Phase.COMPLETE):
        assigned = sorted(set(records) | set(scope))  # every touched node, and stragglers
    with locked(store) as session:
        connection = session.connection()
        current = read_row(connection, key, lock="skip")
        if current is None or any(current[k] != row[k] for k in _WHERE_IT_WAS):
            return None  # another replica holds it or moved it, or an operator did
        _store_records(connection, key, decision.records, set(decision.admit))
        if decision.changed:
            connection.execute(update(ROLLOUTS).where(
                ROLLOUTS.c.namespace == key[0], ROLLOUTS.c.kind == key[1],
                ROLLOUTS.c.name == key[2]).values(
                phase=decision.state.phase.value, wave=decision.state.wave,
                message=decision.state.message, updated_at=now))
        after = subject.assign(session, key[0], key[2], assigned, now=now)  # sees the above
    if after is not None:
        after()
    return Advanced(key[0], key[1], key[2], decision.state.phase, decision.state.message,
                    len(assigned))


_WHERE_IT_WAS = ("phase", "wave", "target", "stable", "acknowledged", "started_at")

