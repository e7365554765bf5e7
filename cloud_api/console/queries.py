"""What the console's pages read: each a bounded query, so a page costs the same at 10 or
10,000 nodes.

Why it exists: a dashboard that loads every node or every shadow of a namespace to draw
a page stops answering at fleet size. Node lists are pages of ``PAGE_SIZE`` rows by
keyset (``name > after``), with only those nodes' shadows read, and only the parts shown
(``desired.apps`` and ``reported.appstats``); counts come from the aggregates of
``services.fleet_status``; an app's rollout from ``services.rollout.app_rollout`` (three
values per node, extracted in SQL). Only a node's own page reads its whole document.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, select
from sqlmodel import Session

from cloud_api.services.fleet_status import AppCounts, app_counts, node_states
from cloud_api.services.namespaces import get_namespace
from cloud_api.services.resources import get_resource, list_resources
from cloud_api.services.rollout import app_rollout
from cloud_api.store.engine import table_of
from cloud_api.store.models import Node, Shadow
from schemas.resources import ResourceKind

PAGE_SIZE = 50
FAILING_SHOWN = 100
STATUS_ORDER = {"Failed": 0, "Pending": 1, "Unknown": 2, None: 3, "Running": 4, "Succeeded": 5}


@dataclass
class Overview:
    nodes: dict[str, int]
    apps: list[tuple[str, AppCounts]]  # failing first, then by name


def overview(session: Session, namespace: str) -> Overview:
    get_namespace(session, namespace)
    states = node_states(session, namespace)[namespace]
    counts = app_counts(session, namespace).get(namespace, {})
    for row, _ in list_resources(session, namespace, ResourceKind.APP):
        counts.setdefault(row.name, AppCounts())  # an app no node matches yet
    order = {"Failing": 0, "Progressing": 1, "Unmatched": 2, "Complete": 3}
    apps = sorted(counts.items(), key=lambda item: (order[item[1].state], item[0]))
    return Overview(nodes=states, apps=apps)


@dataclass
class NodeRow:
    name: str
    online: bool
    last_seen: int | None
    labels: dict[str, str]
    apps: int = 0
    failing: list[str] = field(default_factory=list)


@dataclass
class NodePage:
    rows: list[NodeRow]
    after: str  # where this page starts ("" for the first)
    next_after: str | None  # where the next page starts, None on the last


def node_page(session: Session, namespace: str, *, after: str = "", state: str = "",
              size: int = PAGE_SIZE) -> NodePage:
    """One page of a namespace's nodes by name, with what their shadows say of their apps.

    ``state``: ``online``, ``offline`` or empty for all."""
    get_namespace(session, namespace)
    nodes, shadows = table_of(Node), table_of(Shadow)
    query = (select(nodes.c.name, nodes.c.online, nodes.c.last_seen, nodes.c.labels)
             .where(nodes.c.namespace == namespace, nodes.c.name > after)
             .order_by(nodes.c.name).limit(size + 1))
    if state in ("online", "offline"):
        query = query.where(nodes.c.online.is_(state == "online"))
    connection = session.connection()
    found = list(connection.execute(query))
    rows = [NodeRow(name=name, online=bool(online), last_seen=last_seen, labels=dict(labels or {}))
            for name, online, last_seen, labels in found[:size]]
    if rows:
        parts = select(shadows.c.node, shadows.c.desired[("apps",)], shadows.c.reported[("appstats",)]) \
            .where(shadows.c.namespace == namespace, shadows.c.node.in_([row.name for row in rows]))
        by_node = {node: (apps, stats) for node, apps, stats in connection.execute(parts)}
        for row in rows:
            apps, stats = by_node.get(row.name, (None, None))
            row.apps = len(apps) if isinstance(apps, dict) else 0
            if isinstance(stats, dict):
                row.failing = sorted(app for app, entry in stats.items()
                                     if isinstance(entry, dict) and entry.get("status") == "Failed")
    next_after = rows[-1].name if len(found) > size else None
    return NodePage(rows=rows, after=after, next_after=next_after)


@dataclass
class AppView:
    name: str
    version: str
    spec: dict[str, Any]
    counts: dict[str, int]
    versions: list[tuple[str, int]]  # reported version (or "none") -> nodes
    failing: list[dict[str, Any]]  # {"node", "online", "cause", "reportedVersion"}
    failing_total: int
    page: list[dict[str, Any]]
    page_number: int
    pages: int


def app_view(session: Session, namespace: str, name: str, *, page: int = 1,
             size: int = PAGE_SIZE) -> AppView:
    """An app, its rollout over the nodes it matches, the causes of the first failures,
    and one page of its nodes (failing first)."""
    resource, version = get_resource(session, namespace, ResourceKind.APP, name)
    rollout = app_rollout(session, namespace, name)
    nodes: list[dict[str, Any]] = rollout["nodes"]
    versions = Counter(node["reportedVersion"] or "none" for node in nodes)
    failed = [node for node in nodes if node["status"] == "Failed"]
    causes = _causes(session, namespace, name, [node["node"] for node in failed[:FAILING_SHOWN]])
    failing = [{**node, "cause": causes.get(node["node"])} for node in failed[:FAILING_SHOWN]]
    ordered = sorted(nodes, key=lambda node: (STATUS_ORDER.get(node["status"], 2), node["node"]))
    pages = max(1, -(-len(ordered) // size))
    page = min(max(page, 1), pages)
    return AppView(
        name=name, version=str(resource.version), spec=version.spec, counts=rollout["counts"],
        versions=sorted(versions.items(), key=lambda item: (-item[1], item[0])),
        failing=failing, failing_total=len(failed),
        page=ordered[(page - 1) * size:page * size], page_number=page, pages=pages)


def _causes(session: Session, namespace: str, app: str, nodes: list[str]) -> dict[str, str]:
    """``reported.appstats.APP.cause`` of each of ``nodes`` (one query, only that value)."""
    if not nodes:
        return {}
    shadows = table_of(Shadow)
    cause = shadows.c.reported[("appstats", app, "cause")].as_string()
    query = select(shadows.c.node, cause).where(
        and_(shadows.c.namespace == namespace, shadows.c.node.in_(nodes)))
    return {node: text for node, text in session.connection().execute(query) if text}


def resources_of(session: Session, namespace: str) -> dict[str, list[dict[str, Any]]]:
    """Configs (keys and sizes), secrets (keys only), certificates and registries: never a
    secret value, a private key or a password."""
    shown: dict[str, list[dict[str, Any]]] = {}
    for kind in (ResourceKind.CONFIG, ResourceKind.SECRET, ResourceKind.CERTIFICATE,
                 ResourceKind.REGISTRY):
        items = []
        for row, version in list_resources(session, namespace, kind):
            spec = version.spec if isinstance(version.spec, dict) else {}
            item: dict[str, Any] = {"name": row.name, "version": row.version,
                                    "updated": row.updated_at, "description": row.description}
            if kind is ResourceKind.CONFIG:
                data = spec.get("data", {})
                item["keys"] = [(key, len(str(value))) for key, value in sorted(data.items())]
            elif kind is ResourceKind.SECRET:  # stored is the public view: the keys, sealed values
                item["keys"] = [(key, None) for key in spec.get("keys", [])]
            elif kind is ResourceKind.CERTIFICATE:
                item["subject"] = spec.get("subject", "")
                item["notAfter"] = spec.get("notAfter") or spec.get("not_after")
            elif kind is ResourceKind.REGISTRY:
                item["address"] = spec.get("address", "")
                item["username"] = spec.get("username", "")
            items.append(item)
        shown[kind.value] = items
    return shown
