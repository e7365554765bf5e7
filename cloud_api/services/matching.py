"""Recomputing nodes' desired ``apps`` from app selectors and node labels (DESIGN §7).

Why it exists: matching is automatic. Whenever a node's labels, an app's selector or an
app's version change (or an app or a node comes or goes), ``sync_desired_apps`` sets
``desired.apps`` (``{app: version}``) of every affected node to exactly what matches it,
with one shadow update per node that changes, published like any other update
(``accepted``, ``delta``, ``documents``), so the node hears of it at once.

It runs off the request path: the write that makes matching owed stores a
``PendingMatch`` row in its own transaction (``request_match``) and returns;
``cloud_api.rematching`` does the work (``settle_owed``) in the background, on any replica.
``count_changes`` tells the request how many nodes will be affected.

It is built for fleets: bulk reads of apps and node labels, each selector parsed once,
matching by set algebra over a label index (``schemas.labels.match_all``), and the
updates written through the batched write path (``store.shadow_writing.locked_write``):
``BATCH`` documents per transaction, rows locked, compare-and-swapped, one commit.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, and_, delete, or_, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col
from sqlmodel import select as model_select

from cloud_api.mqtt.transport import Publisher
from cloud_api.services.rollout_state import app_pins
from cloud_api.services.shadows import publish_update
from cloud_api.store import shadow_history
from cloud_api.store.engine import Store, table_of
from cloud_api.store.models import Node, PendingMatch, Shadow
from cloud_api.store.models.matching import EVERY_NODE
from cloud_api.store.models.resources import Resource
from cloud_api.store.shadow_writing import locked_write
from schemas.errors import Rejection
from schemas.labels import match_all, parse_selector
from schemas.resources import ResourceKind
from schemas.shadow import (
    APPS_KEY,
    ShadowDocument,
    ShadowLimits,
    UpdateOutcome,
    UpdateRequest,
    apply_update,
    merge_diff,
)
from schemas.topics import TopicScheme

log = logging.getLogger(__name__)

BATCH = 500
_SHADOWS = table_of(Shadow)
_PENDING = table_of(PendingMatch)


def desired_apps(
    session: Session, namespace: str, nodes: Collection[str] | None = None
) -> dict[str, dict[str, str]]:
    """What ``desired.apps`` of each node (all, or ``nodes``) should be: ``{app: version}``."""
    query = model_select(Node.name, Node.labels).where(col(Node.namespace) == namespace)
    if nodes is not None:
        query = query.where(col(Node.name).in_(list(nodes)))
    labels = {name: node_labels or {} for name, node_labels in session.exec(query).all()}
    return apps_for_labels(session, namespace, labels)


def apps_for_labels(
    session: Session, namespace: str, labels: Mapping[str, Mapping[str, str]]
) -> dict[str, dict[str, str]]:
    """What ``desired.apps`` of nodes not yet stored, with these ``labels``, should be."""
    apps = session.exec(
        model_select(Resource.name, Resource.version, Resource.selector).where(
            col(Resource.namespace) == namespace, col(Resource.kind) == ResourceKind.APP.value
        )
    ).all()
    selectors = {name: parse_selector(selector) for name, _, selector in apps}
    versions = {name: str(version) for name, version, _ in apps}
    matched = match_all(selectors, labels)
    pins = {app: pin for app, pin in app_pins(session, namespace).items()
            if pin.target == versions.get(app)}
    if not pins:
        return {node: {app: versions[app] for app in sorted(names)} for node, names in matched.items()}
    wanted: dict[str, dict[str, str]] = {}
    for node, names in matched.items():  # an app rolling out in waves: what its pin says
        values = {app: pins[app].value(node) if app in pins else versions[app] for app in sorted(names)}
        wanted[node] = {app: value for app, value in values.items() if value is not None}
    return wanted


def _patch(current: Any, wanted: dict[str, str]) -> dict[str, Any] | None:
    """The merge patch of ``desired`` that makes its apps ``wanted``; None if nothing to do."""
    if isinstance(current, dict):
        if current == wanted:
            return None
        return {APPS_KEY: merge_diff(current, wanted) or {}}
    return {APPS_KEY: wanted}


def count_changes(session: Session, namespace: str, nodes: Collection[str] | None = None) -> int:
    """How many nodes (of ``nodes``, or all) hold desired apps other than what matches them
    now: the nodes a pending match will update."""
    wanted = desired_apps(session, namespace, nodes)
    current = _SHADOWS.c.desired[(APPS_KEY,)]
    query = select(_SHADOWS.c.node, current).where(_SHADOWS.c.namespace == namespace)
    if nodes is not None:
        query = query.where(_SHADOWS.c.node.in_(sorted(set(nodes))))
    return sum(
        1 for node, apps in session.connection().execute(query)
        if _patch(apps, wanted.get(node, {})) is not None
    )


def sync_desired_apps(
    store: Store,
    namespace: str,
    *,
    publisher: Publisher,
    topics: TopicScheme,
    limits: ShadowLimits,
    now: int,
    nodes: Collection[str] | None = None,
    pace: Callable[[], None] | None = None,
) -> int:
    """Bring ``desired.apps`` of the nodes (all of the namespace, or ``nodes``) up to date.

    Returns how many nodes were updated (each got one update, and its messages, published
    after the commit of its batch). ``pace`` is called before each batch but the first: the
    rematcher waits there while the bridge still digests what the last batch's nodes asked.
    """
    with store.session() as session:
        wanted = desired_apps(session, namespace, nodes)
        rolling = set(app_pins(session, namespace))
    names = sorted(wanted)
    updated = 0
    for start in range(0, len(names), BATCH):
        chunk = names[start : start + BATCH]
        if start and pace is not None:
            pace()

        def change(
            connection: Connection, documents: dict[tuple[str, str], ShadowDocument]
        ) -> list[tuple[str, UpdateOutcome]]:
            outcomes = _rematch(documents, wanted, limits=limits, now=now)
            shadow_history.record(connection, (
                shadow_history.revision(namespace, node, outcome, writer=_writer(outcome, rolling))
                for node, outcome in outcomes))
            return outcomes

        for node, outcome in locked_write(store, [(namespace, node) for node in chunk], change):
            publish_update(publisher, outcome, topics=topics, namespace=namespace, node=node)
            updated += 1
    return updated


def _writer(outcome: UpdateOutcome, rolling: set[str]) -> str:
    """Who made a matching update, for the node's history: ``rollout:APPS`` when an app
    rolling out in waves changed, else ``matching:APPS`` (the apps whose version moved)."""
    patch = outcome.request.state.get("desired") or {}
    apps = sorted(patch.get(APPS_KEY) or {})
    moved = [app for app in apps if app in rolling]
    return f"rollout:{','.join(moved)}" if moved else f"matching:{','.join(apps)}"


def _rematch(
    documents: dict[tuple[str, str], ShadowDocument], wanted: dict[str, dict[str, str]], *,
    limits: ShadowLimits, now: int,
) -> list[tuple[str, UpdateOutcome]]:
    """Set each document's desired apps to ``wanted`` (in place); the updates made."""
    outcomes = []
    for key, document in documents.items():
        node = key[1]
        patch = _patch(document.desired.get(APPS_KEY), wanted.get(node, {}))
        if patch is None:
            continue
        # built here, of names and versions already valid: no need to parse it as input
        request = UpdateRequest(state={"desired": patch}, version=None, client_token=None)
        try:
            outcome = apply_update(document, request, now=now, limits=limits)
        except Rejection as exc:  # 413: the document is full; the node keeps what it had
            log.error("cannot set the desired apps of %s/%s: %s", key[0], node, exc.message)
            continue
        documents[key] = outcome.document
        outcomes.append((node, outcome))
    return outcomes


# -- matching owed -----------------------------------------------------------------------
def request_match(
    session: Session, namespace: str, nodes: Collection[str] | None = None, *, now: int
) -> None:
    """Owe a recompute of ``nodes`` (or every node) of ``namespace``. The caller commits, in
    the transaction of the change that makes it owed."""
    ticket = uuid.uuid4().hex
    rows = [{"namespace": namespace, "node": node, "ticket": ticket, "requested_at": now}
            for node in ([EVERY_NODE] if nodes is None else sorted(set(nodes)))]
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    statement = insert(_PENDING).values(rows)
    statement = statement.on_conflict_do_update(
        index_elements=["namespace", "node"],
        set_={"ticket": statement.excluded.ticket, "requested_at": statement.excluded.requested_at},
    )
    session.connection().execute(statement)


@dataclass
class Owed:
    """The matching owed in one namespace: ``nodes`` None means every node."""

    namespace: str
    nodes: set[str] | None = None
    tickets: list[tuple[str, str]] = field(default_factory=list)  # (node, ticket) read


def owed_matches(session: Session) -> list[Owed]:
    """Every namespace with matching owed, oldest request first."""
    rows = session.connection().execute(
        select(_PENDING.c.namespace, _PENDING.c.node, _PENDING.c.ticket)
        .order_by(_PENDING.c.requested_at)
    ).all()
    owed: dict[str, Owed] = {}
    for namespace, node, ticket in rows:
        entry = owed.setdefault(namespace, Owed(namespace, nodes=set()))
        entry.tickets.append((node, ticket))
        if node == EVERY_NODE:
            entry.nodes = None
        elif entry.nodes is not None:
            entry.nodes.add(node)
    return list(owed.values())


def settle(session: Session, owed: Owed) -> None:
    """Forget the requests ``owed`` was read from; newer ones (another ticket) stay owed."""
    for start in range(0, len(owed.tickets), BATCH):
        chunk = owed.tickets[start : start + BATCH]
        session.connection().execute(
            delete(_PENDING).where(
                _PENDING.c.namespace == owed.namespace,
                or_(*(and_(_PENDING.c.node == node, _PENDING.c.ticket == ticket)
                      for node, ticket in chunk)),
            )
        )
    session.commit()


def settle_owed(
    store: Store, *, publisher: Publisher, topics: TopicScheme, limits: ShadowLimits, now: int,
    pace: Callable[[], None] | None = None,
) -> int:
    """Do every match owed, on every namespace; the number of nodes updated."""
    with store.session() as session:
        owed = owed_matches(session)
    updated = 0
    for entry in owed:
        updated += sync_desired_apps(store, entry.namespace, publisher=publisher, topics=topics,
                                     limits=limits, now=now, nodes=entry.nodes, pace=pace)
        with store.session() as session:
            settle(session, entry)
    return updated
