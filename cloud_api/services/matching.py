"""Recomputing nodes' desired ``apps`` from app selectors and node labels (DESIGN §7).

Why it exists: matching is automatic. Whenever a node's labels, an app's selector or an
app's version change (or an app or a node comes or goes), ``sync_desired_apps`` sets
``desired.apps`` (``{app: version}``) of every affected node to exactly what matches it,
with one shadow update per node that changes, published like any other update
(``accepted``, ``delta``, ``documents``), so the node hears of it at once.

It is built for fleets: three bulk reads (apps, node labels, shadows), each selector
parsed once, matching by set algebra over a label index (``schemas.labels.match_all``),
the updates computed with the pure shadow algebra and written as compare-and-swaps in
batches of ``BATCH`` per transaction. A swap lost to a concurrent writer (a node's
report arriving meanwhile) is retried alone through ``update_shadow``.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import bindparam, update
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import Select

from cloud_api.models import Node, Shadow
from cloud_api.models.resources import Resource
from cloud_api.services.shadows import publish_update, update_shadow
from cloud_api.store.engine import table_of
from cloud_api.transport import Publisher
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

BATCH = 1000
WRITABLE = ("desired",)


_SHADOWS = table_of(Shadow)
_SWAP = (
    update(_SHADOWS)
    .where(
        _SHADOWS.c.namespace == bindparam("b_namespace"),
        _SHADOWS.c.node == bindparam("b_node"),
        _SHADOWS.c.version == bindparam("b_expected"),
    )
    .values(
        desired=bindparam("b_desired"),
        metadata=bindparam("b_metadata"),
        version=bindparam("b_version"),
        timestamp=bindparam("b_timestamp"),
    )
)


def desired_apps(
    session: Session, namespace: str, nodes: Collection[str] | None = None
) -> dict[str, dict[str, str]]:
    """What ``desired.apps`` of each node (all, or ``nodes``) should be: ``{app: version}``."""
    apps = session.exec(
        select(Resource.name, Resource.version, Resource.selector).where(
            col(Resource.namespace) == namespace, col(Resource.kind) == ResourceKind.APP.value
        )
    ).all()
    selectors = {name: parse_selector(selector) for name, _, selector in apps}
    versions = {name: str(version) for name, version, _ in apps}
    query = select(Node.name, Node.labels).where(col(Node.namespace) == namespace)
    if nodes is not None:
        query = query.where(col(Node.name).in_(list(nodes)))
    labels = {name: node_labels or {} for name, node_labels in session.exec(query).all()}
    matched = match_all(selectors, labels)
    return {node: {app: versions[app] for app in sorted(names)} for node, names in matched.items()}


def _patch(current: Any, wanted: dict[str, str]) -> dict[str, Any] | None:
    """The merge patch of ``desired`` that makes its apps ``wanted``; None if nothing to do."""
    if isinstance(current, dict):
        if current == wanted:
            return None
        return {APPS_KEY: merge_diff(current, wanted) or {}}
    return {APPS_KEY: wanted}


def sync_desired_apps(
    session: Session,
    namespace: str,
    *,
    publisher: Publisher,
    topics: TopicScheme,
    limits: ShadowLimits,
    now: int,
    nodes: Collection[str] | None = None,
) -> int:
    """Bring ``desired.apps`` of the nodes (all of the namespace, or ``nodes``) up to date.

    Returns how many nodes were updated (each got one update, and its messages).
    """
    wanted = desired_apps(session, namespace, nodes)
    if not wanted:
        return 0
    # sqlmodel's select() takes any number of columns but declares overloads for four at most
    query: Select[str, dict[str, Any], dict[str, Any], dict[str, Any], int, int]
    query = select(  # type: ignore[call-overload]
        Shadow.node, Shadow.desired, Shadow.reported, Shadow.meta, Shadow.version, Shadow.timestamp
    ).where(col(Shadow.namespace) == namespace)
    if nodes is not None:
        query = query.where(col(Shadow.node).in_(list(wanted)))
    pending: list[tuple[str, UpdateOutcome]] = []
    for node, desired, reported, meta, version, timestamp in session.exec(query).all():
        patch = _patch(desired.get(APPS_KEY), wanted.get(node, {}))
        if patch is None:
            continue
        document = ShadowDocument(desired=desired, reported=reported, metadata=meta,
                                  version=version, timestamp=timestamp)
        # built here, of names and versions already valid: no need to parse it as input
        request = UpdateRequest(state={"desired": patch}, version=None, client_token=None)
        pending.append((node, apply_update(document, request, now=now, limits=limits)))
    session.rollback()  # end the read transaction; the writes below are batches of their own
    updated = 0
    for start in range(0, len(pending), BATCH):
        batch = pending[start : start + BATCH]
        done: Sequence[tuple[str, UpdateOutcome | None]]
        if _swap_all(session, namespace, batch):
            done = batch
        else:  # someone else wrote one of these documents meanwhile: one by one, with retries
            done = [(node, _retry(session, namespace, node, wanted[node], limits=limits, now=now))
                    for node, _ in batch]
        for node, outcome in done:
            if outcome is not None:
                publish_update(publisher, outcome, topics=topics, namespace=namespace, node=node)
                updated += 1
    return updated


def _swap_all(session: Session, namespace: str, batch: list[tuple[str, UpdateOutcome]]) -> bool:
    """Compare-and-swap every document of ``batch`` in one transaction; False: none written."""
    params = [_params(namespace, node, outcome) for node, outcome in batch]
    connection = session.connection()
    if connection.dialect.supports_sane_multi_rowcount:
        swapped = connection.execute(_SWAP, params).rowcount == len(params)
    else:
        swapped = all(connection.execute(_SWAP, one).rowcount == 1 for one in params)
    if swapped:
        session.commit()
    else:
        session.rollback()
    return swapped


def _params(namespace: str, node: str, outcome: UpdateOutcome) -> dict[str, Any]:
    document: ShadowDocument = outcome.document
    return {
        "b_namespace": namespace,
        "b_node": node,
        "b_expected": outcome.previous.version,
        "b_desired": document.desired,
        "b_metadata": document.metadata,
        "b_version": document.version,
        "b_timestamp": document.timestamp,
    }


def _retry(
    session: Session, namespace: str, node: str, wanted: dict[str, str], *, limits: ShadowLimits,
    now: int,
) -> UpdateOutcome | None:
    row = session.get(Shadow, (namespace, node), populate_existing=True)
    if row is None:
        return None  # deleted meanwhile
    patch = _patch(row.desired.get(APPS_KEY), wanted)
    session.rollback()
    if patch is None:
        return None
    return update_shadow(session, namespace, node, {"state": {"desired": patch}},
                         writable=WRITABLE, now=now, limits=limits)
