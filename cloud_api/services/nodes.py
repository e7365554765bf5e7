"""Nodes: creating one creates its empty shadow; deleting one removes everything it owns.

A node's ``online`` flag and ``last_seen`` follow its retained ``status`` messages (the
node publishes ``online: true`` on connect; its last will publishes ``online: false``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from sqlalchemy import delete, func, insert, text, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from cloud_api.errors import AlreadyExists, NotFound
from cloud_api.services.listing import Page, decode_continue, encode_continue, selector_sql
from cloud_api.services.matching import apps_for_labels, desired_apps, request_match
from cloud_api.services.namespaces import get_namespace
from cloud_api.services.node_certificates import revoke_node_credentials
from cloud_api.store.engine import table_of
from cloud_api.store.models import (
    ActivationToken,
    Node,
    NodeBulkItem,
    NodeBulkResult,
    NodeCreate,
    NodeCredential,
    NodePublic,
    NodeUpdate,
    Shadow,
)
from schemas.errors import Rejection
from schemas.labels import Selector
from schemas.names import validate_name


def create_node(session: Session, namespace: str, node_in: NodeCreate, *, now: int) -> Node:
    """Create a node and its shadow at version 0; 400 bad name, 404 no namespace, 409 taken."""
    validate_name(node_in.name, kind="node name")
    get_namespace(session, namespace)
    if session.get(Node, (namespace, node_in.name)) is not None:
        raise AlreadyExists(f"node {namespace}/{node_in.name} already exists")
    node = Node(
        namespace=namespace,
        name=node_in.name,
        labels=dict(node_in.labels),
        description=node_in.description,
        mode=node_in.mode,
        created_at=now,
    )
    session.add(node)
    try:
        session.flush()  # the node row first: the shadow's foreign key points at it
        session.add(_first_shadow(session, namespace, node_in.name, now=now))
        session.commit()
    except IntegrityError as exc:  # created concurrently by another request or replica
        session.rollback()
        raise AlreadyExists(f"node {namespace}/{node_in.name} already exists") from exc
    return node


def _first_shadow(session: Session, namespace: str, name: str, *, now: int) -> Shadow:
    """A new node's shadow: ``desired.apps`` already holds the apps matched to it (maybe
    none, but present, so that a node still running apps it should not gets ``null``s in
    its delta, DESIGN §5)."""
    apps = desired_apps(session, namespace, [name]).get(name, {})
    stamps = {"apps": {app: {"timestamp": now} for app in apps}} if apps else {}
    return Shadow(namespace=namespace, node=name, desired={"apps": apps},
                  meta={"desired": stamps, "reported": {}})


def create_nodes(
    session: Session, namespace: str, items: Sequence[Any], *, now: int
) -> NodeBulkResult:
    """Create many nodes with their shadows in one transaction (``POST .../nodes:bulk``).

    Each item is checked alone: a bad one is ``failed`` with its message, a name that
    exists is ``exists`` (left as it is, like ``ensure_node``), and neither stops the
    others. The apps matched to the new nodes are computed once for all of them.
    """
    get_namespace(session, namespace)
    results: list[NodeBulkItem] = []
    wanted: dict[str, NodeCreate] = {}
    for index, item in enumerate(items):
        name = item.get("name") if isinstance(item, dict) else None
        label = name if isinstance(name, str) else f"items[{index}]"
        try:
            node_in = NodeCreate.model_validate(item)
            validate_name(node_in.name, kind="node name")
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(part) for part in first["loc"]) or "item"
            results.append(NodeBulkItem(name=label, status="failed", message=f"{where}: {first['msg']}"))
            continue
        except Rejection as exc:
            results.append(NodeBulkItem(name=label, status="failed", message=exc.message))
            continue
        if node_in.name in wanted:
            results.append(NodeBulkItem(name=label, status="failed", message="listed twice"))
            continue
        wanted[node_in.name] = node_in
        results.append(NodeBulkItem(name=node_in.name, status="created"))
    for attempt in range(2):  # again if a node was created concurrently meanwhile
        existing = set(session.exec(
            select(Node.name).where(col(Node.namespace) == namespace,
                                    col(Node.name).in_(sorted(wanted)))
        ).all()) if wanted else set()
        new = [node_in for name, node_in in wanted.items() if name not in existing]
        try:
            _insert_nodes(session, namespace, new, now=now)
            session.commit()
            break
        except IntegrityError:
            session.rollback()
            if attempt:
                raise
    for result in results:
        if result.status == "created" and result.name in existing:
            result.status = "exists"
    return NodeBulkResult(
        created=sum(r.status == "created" for r in results),
        existing=sum(r.status == "exists" for r in results),
        failed=sum(r.status == "failed" for r in results),
        items=results,
    )


def _insert_nodes(session: Session, namespace: str, nodes: list[NodeCreate], *, now: int) -> None:
    """Two ``executemany`` INSERTs: the nodes, then their shadows with their matched apps."""
    if not nodes:
        return
    apps = apps_for_labels(session, namespace, {node.name: node.labels for node in nodes})
    connection = session.connection()
    connection.execute(insert(table_of(Node)), [
        {"namespace": namespace, "name": node.name, "labels": dict(node.labels),
         "description": node.description, "mode": node.mode, "created_at": now,
         "online": False, "last_seen": None}
        for node in nodes
    ])
    shadows = []
    for node in nodes:
        matched = apps.get(node.name, {})
        stamps = {"apps": {app: {"timestamp": now} for app in matched}} if matched else {}
        shadows.append({"namespace": namespace, "node": node.name, "desired": {"apps": matched},
                        "reported": {}, "metadata": {"desired": stamps, "reported": {}},
                        "version": 0, "timestamp": 0})
    connection.execute(insert(table_of(Shadow)), shadows)


def update_node(
    session: Session, namespace: str, name: str, node_in: NodeUpdate, *, now: int = 0
) -> Node:
    """Change a node's labels and description (the fields sent). New labels owe a match of
    the node (``services.matching``), stored with them; the caller wakes the matcher."""
    node = get_node(session, namespace, name)
    if node_in.labels is not None:
        node.labels = dict(node_in.labels)
        request_match(session, namespace, [name], now=now)
    if node_in.description is not None:
        node.description = node_in.description
    session.add(node)
    session.commit()
    return node


def ensure_node(session: Session, namespace: str, node_in: NodeCreate, *, now: int) -> Node:
    """The node, created as ``node_in`` if missing (an existing node is left as it is)."""
    try:
        return create_node(session, namespace, node_in, now=now)
    except AlreadyExists:
        return get_node(session, namespace, node_in.name)


def get_node(session: Session, namespace: str, name: str) -> Node:
    validate_name(namespace, kind="namespace")
    validate_name(name, kind="node name")
    node = session.get(Node, (namespace, name))
    if node is None:
        raise NotFound(f"node {namespace}/{name} not found")
    return node


def list_nodes(session: Session, namespace: str) -> list[Node]:
    get_namespace(session, namespace)
    query = select(Node).where(Node.namespace == namespace).order_by(col(Node.name))
    return list(session.exec(query).all())


def page_nodes(
    session: Session, namespace: str, *, selector: Selector | None = None,
    online: bool | None = None, limit: int | None = None, continue_token: str | None = None,
) -> Page:
    """A keyset page of a namespace's nodes by name, filtered in SQL by label selector and
    ``online`` (``services.listing``); all of them without ``limit``."""
    get_namespace(session, namespace)
    query = (select(Node)
             .where(col(Node.namespace) == namespace, selector_sql(col(Node.labels), selector))
             .order_by(col(Node.name)))
    if online is not None:
        query = query.where(col(Node.online).is_(online))
    if continue_token is not None:
        query = query.where(col(Node.name) > decode_continue(continue_token, f"nodes/{namespace}"))
    if limit is not None:
        query = query.limit(limit + 1)
    rows = list(session.exec(query).all())
    more = limit is not None and len(rows) > limit
    rows = rows[:limit] if limit is not None else rows
    after = encode_continue(f"nodes/{namespace}", rows[-1].name) if more and rows else None
    return Page(items=[to_public(node) for node in rows], continue_token=after)


_NODE_COUNTS = """
SELECT NULL AS app, NULL AS status, count(*) AS n,
       sum(CASE WHEN n.online THEN 1 ELSE 0 END) AS online,
       sum(CASE WHEN EXISTS (SELECT 1 FROM node_certificates c WHERE c.namespace = n.namespace
                             AND c.node = n.name AND c.revoked_at IS NOT NULL)
                 AND NOT EXISTS (SELECT 1 FROM node_certificates c WHERE c.namespace = n.namespace
                             AND c.node = n.name AND c.revoked_at IS NULL AND c.not_after > :now)
                 AND NOT EXISTS (SELECT 1 FROM node_credentials p WHERE p.namespace = n.namespace
                             AND p.node = n.name)
           THEN 1 ELSE 0 END) AS revoked
FROM nodes n WHERE n.namespace = :ns"""
_APP_STATUSES = {
    "sqlite": """
SELECT a.key, json_extract(a.value, '$.status'), count(*), 0, 0
FROM shadows s, json_each(s.reported, '$.appstats') AS a
WHERE s.namespace = :ns AND json_type(s.reported, '$.appstats') = 'object'
GROUP BY 1, 2""",
    "postgresql": """
SELECT a.key, a.value ->> 'status', count(*), 0, 0
FROM shadows s, json_each(CASE WHEN json_typeof(s.reported -> 'appstats') = 'object'
                               THEN s.reported -> 'appstats' ELSE '{}'::json END) AS a
WHERE s.namespace = :ns AND json_typeof(a.value) = 'object'
GROUP BY 1, 2""",
}


def summarize_nodes(session: Session, namespace: str, *, now: int) -> dict[str, Any]:
    """The fleet view's counts (``GET .../nodes:summary``), in one query: nodes by online
    state, how many are revoked (a certificate revoked and no credential that works, as
    ``node_certificates.cut_off`` decides), and apps by the status their nodes report
    (``reported.appstats.APP.status``, grouped in SQL with ``json_each``)."""
    get_namespace(session, namespace)
    connection = session.connection()
    statement = text(_NODE_COUNTS + "\nUNION ALL" + _APP_STATUSES[connection.dialect.name])
    total = online = revoked = 0
    apps: dict[str, dict[str, int]] = {}
    for app, status, count, online_count, revoked_count in connection.execute(
            statement, {"ns": namespace, "now": now}):
        if app is None:
            total, online, revoked = int(count), int(online_count or 0), int(revoked_count or 0)
            continue
        label = status if isinstance(status, str) else "Unknown"
        by_status = apps.setdefault(str(app), {})
        by_status[label] = by_status.get(label, 0) + int(count)
    by_status_total: dict[str, int] = {}
    for counts in apps.values():
        for status, count in counts.items():
            by_status_total[status] = by_status_total.get(status, 0) + count
    return {"namespace": namespace,
            "nodes": {"total": total, "online": online, "offline": total - online,
                      "revoked": revoked},
            "apps": {"byStatus": dict(sorted(by_status_total.items())),
                     "byApp": {app: dict(sorted(c.items())) for app, c in sorted(apps.items())}}}


def delete_node(session: Session, namespace: str, name: str, *, now: int = 0) -> None:
    """Delete a node with its shadow, credential and activation tokens; 404 if missing.

    Its certificates are revoked, not deleted: the revoked list outlives the node.
    """
    get_node(session, namespace, name)
    revoke_node_credentials(session, namespace, name, now=now)
    for table in (ActivationToken, NodeCredential, Shadow):
        session.exec(
            delete(table).where(col(table.namespace) == namespace, col(table.node) == name)
        )
    session.exec(delete(Node).where(col(Node.namespace) == namespace, col(Node.name) == name))
    session.commit()


def set_online(session: Session, namespace: str, name: str, *, online: bool, now: int) -> bool:
    """Record a node's status; False if there is no such node (nothing is written then)."""
    result = session.exec(
        update(Node)
        .where(col(Node.namespace) == namespace, col(Node.name) == name)
        .values(online=online, last_seen=now)
    )
    session.commit()
    return bool(result.rowcount == 1)


def count_online(session: Session) -> int:
    query = select(func.count()).select_from(Node).where(col(Node.online).is_(True))
    return int(session.exec(query).one())


def to_public(node: Node) -> NodePublic:
    return NodePublic.model_validate(node)
