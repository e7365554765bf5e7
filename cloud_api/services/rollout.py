"""Delivering apps to nodes: what a node may fetch (``resources/get``), and how far an
app's rollout got (``GET .../apps/{name}/nodes``).

Why it exists: secret values leave the cloud only to the nodes matched to them (DESIGN
§7). ``fetch_resources`` is that rule: a node gets an app version that is (or was, one
version ago) in its ``desired.apps``, and the configs, secrets, certificates and
registries those app versions pin; anything else in the cloud is 403, a version that
does not exist 404. The previous version is allowed too so that a node fetching the
version of a delta that has just been superseded still gets it, instead of failing.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from sqlalchemy import and_, select
from sqlmodel import Session

from cloud_api.models import Node, Shadow
from cloud_api.models.resources import AppNodeStatus, AppRollout, AppRolloutCounts
from cloud_api.services.resources import get_resource, get_version, open_version
from cloud_api.services.secrets_crypto import SecretBox
from cloud_api.services.shadows import get_document
from cloud_api.store.engine import table_of
from schemas.errors import ErrorCode, Rejection
from schemas.resources import App, ResourceItem, ResourceKind
from schemas.shadow import APPS_KEY, ShadowLimits, parse_client_token

MAX_ITEMS = 100


def _parse_items(body: Any) -> list[ResourceItem]:
    if not isinstance(body, dict) or not isinstance(body.get("items"), list):
        raise Rejection(ErrorCode.BAD_REQUEST, "resources/get needs {\"items\": [{kind, name, version}]}")
    items = body["items"]
    if not 0 < len(items) <= MAX_ITEMS:
        raise Rejection(ErrorCode.BAD_REQUEST, f"ask for 1 to {MAX_ITEMS} items at a time")
    unknown = set(body) - {"items", "clientToken"}
    if unknown:
        raise Rejection(ErrorCode.BAD_REQUEST, f"unknown field(s): {', '.join(sorted(unknown))}")
    try:
        parsed = [ResourceItem.model_validate(item) for item in items]
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        raise Rejection(ErrorCode.BAD_REQUEST, f"bad item: {where}: {first['msg']}") from None
    if any(item.value is not None for item in parsed):
        raise Rejection(ErrorCode.BAD_REQUEST, "ask with kind, name and version only")
    return parsed


def _allowed(session: Session, namespace: str, desired: dict[str, Any]) -> set[tuple[str, str, str]]:
    """(kind, name, version) a node may fetch, given its desired apps."""
    allowed: set[tuple[str, str, str]] = set()
    for app, version in desired.items():
        if not isinstance(version, str) or not version.isdigit():
            continue
        for number in {int(version), int(version) - 1} - {0}:
            row = get_version(session, namespace, ResourceKind.APP, app, number)
            if row is None:
                continue
            allowed.add((ResourceKind.APP.value, app, str(number)))
            for kind, ref in App.model_validate(row.spec).references():
                allowed.add((kind.value, ref.name, ref.version))
    return allowed


def fetch_resources(
    session: Session, box: SecretBox | None, namespace: str, node: str, body: Any, *,
    limits: ShadowLimits,
) -> dict[str, Any]:
    """The ``resources/get/accepted`` reply to ``body``; Rejection 400/403/404 otherwise."""
    client_token = parse_client_token(body, limits) if isinstance(body, dict) else None
    desired = get_document(session, namespace, node).desired.get(APPS_KEY)  # 404: no such node
    items = _parse_items(body)
    allowed = _allowed(session, namespace, desired if isinstance(desired, dict) else {})
    answered = []
    for item in items:
        label = f"{item.kind.value} {item.name} version {item.version}"
        row = (
            get_version(session, namespace, item.kind, item.name, int(item.version))
            if item.version.isdigit() else None
        )
        if row is None:
            raise Rejection(ErrorCode.NOT_FOUND, f"{label} not found")
        if (item.kind.value, item.name, item.version) not in allowed:
            raise Rejection(ErrorCode.FORBIDDEN, f"{label} is not matched to this node")
        value = open_version(box, row)
        answered.append({**item.wire(), "value": value})
    reply: dict[str, Any] = {"items": answered}
    if client_token is not None:
        reply = {"clientToken": client_token, **reply}
    return reply


def app_rollout(session: Session, namespace: str, name: str) -> AppRollout:
    """The nodes an app is matched to, with what they report of it.

    Only the three values it needs leave the database (``desired.apps.NAME``,
    ``reported.apps.NAME``, ``reported.appstats.NAME.status``, extracted by SQLite's
    ``json_extract`` or PostgreSQL's ``#>``), not every node's documents: 10,000 nodes
    answer in tens of milliseconds.
    """
    app, _ = get_resource(session, namespace, ResourceKind.APP, name)
    shadows, nodes_table = table_of(Shadow), table_of(Node)
    desired = shadows.c.desired[(APPS_KEY, name)]
    query = (
        select(shadows.c.node, desired, shadows.c.reported[(APPS_KEY, name)],
               shadows.c.reported[("appstats", name, "status")], nodes_table.c.online)
        .join(nodes_table, and_(nodes_table.c.namespace == shadows.c.namespace,
                                nodes_table.c.name == shadows.c.node))
        .where(shadows.c.namespace == namespace, desired.as_string().is_not(None))
        .order_by(shadows.c.node)
    )
    nodes = [
        AppNodeStatus(
            node=node,
            desired_version=str(desired_version),
            reported_version=_text(reported_version),
            status=_text(status),
            online=bool(online),
        )
        for node, desired_version, reported_version, status, online
        in session.connection().execute(query)
        if desired_version is not None
    ]
    counts = AppRolloutCounts(
        matched=len(nodes),
        updated=sum(n.reported_version == n.desired_version for n in nodes),
        running=sum(n.status == "Running" for n in nodes),
        failed=sum(n.status == "Failed" for n in nodes),
        offline=sum(not n.online for n in nodes),
    )
    return AppRollout(app=name, version=str(app.version), counts=counts, nodes=nodes)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _object(value: object) -> dict[str, Any]:
    """``value`` if it is a JSON object, else ``{}`` (a node may report anything)."""
    return value if isinstance(value, dict) else {}
