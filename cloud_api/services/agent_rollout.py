"""The edge agent's own version, rolled out in waves: the wave engine's ``Subject`` for it.

Why it exists: an agent upgrade must go out with the same waves and health gates as an app
(issue 12), so a bad agent version stops at the first wave and goes back where it reached.
``services.agent_upgrade`` sets every selected node at once; with a strategy,
``start`` instead records the rollout (``rollout_state.version_written(..., kind="sysapp")``)
and ``AgentSubject``, registered at import for kind ``sysapp``, lets the background
``cloud_api.rolling`` driver of every replica advance it:

* ``scope``: the nodes the upgrade selected, kept in the rollout's strategy row under
  ``rollout_state.SUBJECT_KEY`` with the full target and each node's previous target
  (so a rollback gives a node back exactly what it had, or clears the target);
* ``observe``: ``reported.sysapps.tether`` (``Running`` the target: ready;
  ``RolledBack``/``Failed`` for it: failed, with the node's cause), online from ``nodes``;
* ``assign``: ``desired.sysapps.tether`` written in the caller's transaction with
  ``read_documents``/``swap_documents`` (and a shadow history row, writer
  ``rollout:tether``); the deltas are published after the commit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from typing import Any

from sqlalchemy import and_, select
from sqlmodel import Session

from cloud_api.errors import CloudError
from cloud_api.mqtt.transport import NullPublisher, Publisher
from cloud_api.services import rollout_state
from cloud_api.services.rollout_state import SUBJECT_KEY, version_written
from cloud_api.services.rollout_waves import AfterCommit, read_records, read_row, register
from cloud_api.services.shadows import publish_update
from cloud_api.services.waves import Observation, Phase, pinned_value
from cloud_api.store import shadow_history
from cloud_api.store.engine import Store, table_of
from cloud_api.store.models import Node, Shadow
from cloud_api.store.shadow_writing import read_documents, swap_documents
from schemas.errors import ErrorCode, Rejection
from schemas.resources import RolloutStrategy
from schemas.shadow import ShadowDocument, ShadowLimits, UpdateOutcome, UpdateRequest, apply_update
from schemas.sysapps import AGENT_KEY, SYSAPPS_KEY, AgentState, AgentTarget, reported_agent
from schemas.topics import TopicScheme

log = logging.getLogger(__name__)

KIND, NAME = "sysapp", AGENT_KEY
WRITER = "rollout:tether"
_SHADOWS, _NODES = table_of(Shadow), table_of(Node)


def _current(document: ShadowDocument | None) -> Any:
    sysapps = document.desired.get(SYSAPPS_KEY) if document is not None else None
    return sysapps.get(AGENT_KEY) if isinstance(sysapps, dict) else None


def start(store: Store, namespace: str, nodes: Collection[str], target: AgentTarget,
          strategy: RolloutStrategy, *, now: int) -> dict[str, Any]:
    """Start (or replace) the wave rollout of ``target`` to ``nodes``; nobody moves until
    the driver admits wave 1. Returns the rollout's phase and message."""
    names = sorted(set(nodes))
    with store.session() as session:
        documents = read_documents(session.connection(), [(namespace, n) for n in names])
        distinct: list[Any] = []
        previous: dict[str, int] = {}
        for node in names:
            value = _current(documents.get((namespace, node)))
            if value not in distinct:
                distinct.append(value)
            previous[node] = distinct.index(value)
        versions = {v.get("version") if isinstance(v, dict) else None for v in distinct}
        stable = versions.pop() if len(versions) == 1 else None
        blob = {"target": target.to_json(), "previous": distinct, "nodes": previous}
        version_written(session, namespace, NAME, previous=stable, target=target.version,
                        strategy={**strategy.wire(), SUBJECT_KEY: blob}, now=now, kind=KIND)
        session.commit()
        row = read_row(session.connection(), (namespace, KIND, NAME), lock=None)
        return {"phase": row["phase"], "message": row["message"]}


def forget(store: Store, namespace: str) -> None:
    """Drop the agent rollout of ``namespace`` (an upgrade set at once replaces it, as an
    app written without ``spec.rollout`` does)."""
    with store.session() as session:
        rollout_state.forget(session, namespace, NAME, kind=KIND)
        session.commit()


def status(session: Session, namespace: str) -> dict[str, Any]:
    """The agent rollout of ``namespace``: phase, versions, wave, each admitted node's outcome."""
    connection = session.connection()
    row = read_row(connection, (namespace, KIND, NAME), lock=None)
    if row is None:
        raise Rejection(ErrorCode.NOT_FOUND, f"no agent rollout in {namespace}: start one with "
                                             "tether agent upgrade VERSION --waves ...")
    records = read_records(connection, (namespace, KIND, NAME))
    strategy = {k: v for k, v in row["strategy"].items() if k != SUBJECT_KEY}
    return {"phase": row["phase"], "target": row["target"], "stable": row["stable"],
            "wave": row["wave"] + 1, "message": row["message"], "strategy": strategy,
            "nodes": {node: {"wave": r.wave + 1, "outcome": r.outcome.value, "cause": r.cause}
                      for node, r in sorted(records.items())}}


class AgentSubject:
    """``desired.sysapps.tether``, reported as ``reported.sysapps.tether``.

    ``configure`` gives it the publisher (a callable: the runtime's publisher changes when
    the bridge connects), topics and limits; until then the deltas go nowhere (a node still
    gets its desired on its next shadow get)."""

    def __init__(self) -> None:
        self.publisher: Callable[[], Publisher] = NullPublisher
        self.topics = TopicScheme()
        self.limits = ShadowLimits()

    def configure(self, publisher: Callable[[], Publisher], *, topics: TopicScheme,
                  limits: ShadowLimits) -> None:
        self.publisher, self.topics, self.limits = publisher, topics, limits

    def _blob(self, session: Session, namespace: str) -> tuple[Any, dict[str, Any]]:
        row = read_row(session.connection(), (namespace, KIND, NAME), lock=None)
        if row is None:
            raise CloudError(f"no agent rollout in {namespace}", code=ErrorCode.NOT_FOUND)
        return row, row["strategy"].get(SUBJECT_KEY) or {"nodes": {}, "previous": [None]}

    def scope(self, session: Session, namespace: str, name: str) -> dict[str, dict[str, str]]:
        _, blob = self._blob(session, namespace)
        selected = set(blob["nodes"])
        return {node: labels or {} for node, labels in session.connection().execute(
            select(_NODES.c.name, _NODES.c.labels).where(_NODES.c.namespace == namespace))
            if node in selected}

    def observe(self, session: Session, namespace: str, name: str,
                nodes: Collection[str]) -> dict[str, Observation]:
        if not nodes:
            return {}
        query = (select(_SHADOWS.c.node, _SHADOWS.c.reported, _NODES.c.online)
                 .join(_NODES, and_(_NODES.c.namespace == _SHADOWS.c.namespace,
                                    _NODES.c.name == _SHADOWS.c.node))
                 .where(_SHADOWS.c.namespace == namespace,
                        _SHADOWS.c.node.in_(sorted(set(nodes)))))
        return {node: _observation(bool(online), reported or {})
                for node, reported, online in session.connection().execute(query)}

    def assign(self, session: Session, namespace: str, name: str, nodes: Collection[str], *,
               now: int) -> AfterCommit | None:
        if not nodes:
            return None
        connection = session.connection()
        row, blob = self._blob(session, namespace)
        phase, target = Phase(row["phase"]), row["target"]
        admitted = set(read_records(connection, (namespace, KIND, NAME)))
        documents = read_documents(connection, [(namespace, n) for n in sorted(set(nodes))])
        originals = dict(documents)
        outcomes: list[tuple[str, UpdateOutcome]] = []
        for key, document in documents.items():
            node = key[1]
            if pinned_value(phase, admitted=node in admitted, target=target, stable=None) == target:
                value = blob["target"]
            else:  # what it had before the rollout (None: no target at all)
                value = blob["previous"][blob["nodes"].get(node, 0)] if node in blob["nodes"] \
                    else _current(document)
            if _current(document) == value:
                continue
            request = UpdateRequest(state={"desired": {SYSAPPS_KEY: {AGENT_KEY: value}}})
            try:
                outcome = apply_update(document, request, now=now, limits=self.limits)
            except Rejection as exc:  # 413: the document is full; the node keeps its version
                log.error("cannot set the agent version of %s/%s: %s", *key, exc.message)
                continue
            documents[key] = outcome.document
            outcomes.append((node, outcome))
        if not swap_documents(connection, documents, originals):
            raise CloudError("a node's shadow changed under the agent rollout; retrying",
                             code=ErrorCode.CONFLICT)  # rolled back; the next step retries
        shadow_history.record(connection, (shadow_history.revision(namespace, node, outcome,
                                                                   writer=WRITER)
                                           for node, outcome in outcomes))
        publisher, topics = self.publisher(), self.topics

        def publish() -> None:
            for node, outcome in outcomes:
                publish_update(publisher, outcome, topics=topics, namespace=namespace, node=node)
        return publish


def _observation(online: bool, reported: dict[str, Any]) -> Observation:
    report = reported_agent(reported)  # lenient: anything malformed is nothing known
    if report is None:
        return Observation(online=online)
    if report.state is AgentState.RUNNING:
        return Observation(online=online, value=report.version, status_of=report.version,
                           status="Running")
    if report.state in (AgentState.ROLLED_BACK, AgentState.FAILED):
        return Observation(online=online, value=report.version, status_of=report.target,
                           status="Failed", cause=report.cause[:500]
                           or f"agent {report.target} {report.state.value}")
    return Observation(online=online, value=report.version, status_of=report.target,
                       status="Pending")


AGENT_SUBJECT = AgentSubject()
register(KIND, AGENT_SUBJECT)
