"""The audit trail of REST writes: what a write is, recording it, listing it.

Why it exists: "who changed what" must be answerable for every write an operator (or a
script, or the CLI) asks of the API, and the answer must not lie. So:

- A write that is stored records its ``AuditEntry`` in the same transaction: ``attach``
  hooks the request's session, and its ``before_commit`` inserts the row with the
  resource's version after the write. If the commit fails, the row goes with it. Thus a
  row with ``outcome="done"`` exists if and only if the write happened.
- A write that is refused (4xx) or fails (5xx) is recorded afterwards, in a transaction of
  its own, with its status (``outcome`` ``refused`` or ``failed``), by the REST layer's
  ``AuditMiddleware``, which also records a write whose route stored nothing through its
  session (there is none today; the fallback keeps the rule "every write is recorded").
- Dry runs (``dryRun``) store nothing and record nothing.
- What is a write: POST, PUT, PATCH and DELETE under ``/v1``, plus ``GET .../init`` (it
  mints an activation token). Not audited: activation and renewal (a node's own
  credentials), broker authentication, function invocations, and MQTT traffic.
- Versions: ``beforeVersion``/``afterVersion`` are the resource's version for apps,
  configs, secrets, certificates and registries, and the document's version for shadows;
  nodes, namespaces and tokens have none (null).
- Retention is bounded: every ``PRUNE_EVERY`` rows, rows beyond ``max_rows`` (newest
  kept) or older than ``max_age_days`` are deleted (``AuditRetention``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, delete, event, insert, or_, select
from sqlmodel import Session, col

from cloud_api.services.listing import Page, decode_continue, encode_continue
from cloud_api.store.engine import table_of
from cloud_api.store.models import ApiToken, AuditEntry, Resource, Shadow

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ACTIONS = {"POST": "create", "PUT": "replace", "PATCH": "update", "DELETE": "delete"}
NOT_AUDITED = re.compile(r"^/v1/(activate|renew|broker/|init/)|/functions/")
RESOURCE_KINDS = {"apps": "app", "configs": "config", "secrets": "secret",
                  "certificates": "certificate", "registries": "registry"}
PRUNE_EVERY = 500


@dataclass(frozen=True)
class AuditRetention:
    max_rows: int = 1_000_000
    max_age_days: int = 90


@dataclass
class AuditDraft:
    """What one request writes, filled in as the request learns it; recorded once."""

    method: str
    path: str
    action: str
    kind: str
    namespace: str | None = None
    name: str | None = None
    token_id: int | None = None
    role: str | None = None
    before_version: str | None = None
    success_status: int = 200
    recorded: bool = False  # a row of this request is committed
    _pending: bool = field(default=False, repr=False)  # inserted, commit not yet done


def is_audited(method: str, path: str) -> bool:
    if not path.startswith("/v1/") or NOT_AUDITED.search(path):
        return False
    return method in WRITE_METHODS or (method == "GET" and path.endswith("/init"))


def draft_of(method: str, path: str, template: str | None, params: dict[str, Any]) -> AuditDraft:
    """The draft of an audited request: kind, namespace and name from the route template
    (e.g. ``/v1/namespaces/{namespace}/apps/{name}``), or from the path if none matched."""
    parts = (template or path).strip("/").split("/")[1:]  # without "v1"

    def value(part: str) -> str | None:
        if part.startswith("{") and part.endswith("}"):
            found = params.get(part[1:-1])
            return None if found is None else str(found)
        return part

    action = ACTIONS.get(method, "create")
    kind, namespace, name = parts[0] if parts else "unknown", None, None
    if parts[:1] == ["namespaces"]:
        kind = "namespace"
        if len(parts) >= 2:
            namespace = value(parts[1])
        if len(parts) >= 3:
            plural = parts[2].split(":")[0]
            kind = RESOURCE_KINDS.get(plural, plural.rstrip("s"))
        if len(parts) >= 4:
            name = value(parts[3])
        if len(parts) >= 5:
            sub = parts[4]
            if sub == "revoke":
                action = "revoke"
            elif sub == "init":
                kind, action = "activation", "create"
            else:
                kind, action = sub, "update" if method in ("PATCH", "PUT") else action
    elif parts[:1] == ["tokens"]:
        kind = "token"
        if len(parts) >= 2:
            name = value(parts[1])
        if parts[2:3] == ["revoke"]:
            action = "revoke"
    return AuditDraft(method=method, path=path[:512], action=action, kind=kind[:32],
                      namespace=namespace, name=name)


def version_of(connection: Connection, kind: str, namespace: str | None,
               name: str | None) -> str | None:
    """The current version of what ``kind/namespace/name`` names, if it has one."""
    if namespace is None or name is None:
        return None
    if kind in RESOURCE_KINDS.values():
        resources = table_of(Resource)
        found = connection.execute(select(resources.c.version).where(
            resources.c.namespace == namespace, resources.c.kind == kind,
            resources.c.name == name)).scalar()
    elif kind == "shadow":
        shadows = table_of(Shadow)
        found = connection.execute(select(shadows.c.version).where(
            shadows.c.namespace == namespace, shadows.c.node == name)).scalar()
    else:
        return None
    return None if found is None else str(found)


def attach(session: Session, draft: AuditDraft, *, now: Any, retention: AuditRetention) -> None:
    """Record ``draft`` in the first transaction ``session`` commits (with the after version).

    ``now`` is the clock (a callable returning epoch seconds)."""

    def before_commit(committing: Session) -> None:
        if draft.recorded or draft._pending or not committing.in_transaction():
            return
        connection = committing.connection()
        if (draft.action == "replace" and draft.kind in RESOURCE_KINDS.values()
                and draft.before_version is None):
            draft.action = "create"  # PUT of something that did not exist
        after = None if draft.action in ("delete", "revoke") and draft.kind != "shadow" else (
            version_of(connection, draft.kind, draft.namespace, draft.name))
        record(connection, draft, status=draft.success_status, outcome="done",
               now=int(now()), after_version=after, retention=retention)
        draft._pending = True

    def after_commit(committed: Session) -> None:
        if draft._pending:
            draft.recorded, draft._pending = True, False

    def after_rollback(rolled_back: Session) -> None:
        draft._pending = False

    event.listen(session, "before_commit", before_commit)
    event.listen(session, "after_commit", after_commit)
    event.listen(session, "after_rollback", after_rollback)


def record(connection: Connection, draft: AuditDraft, *, status: int, outcome: str, now: int,
           after_version: str | None = None, retention: AuditRetention) -> None:
    """Insert the row of ``draft`` (the caller commits); prune now and then."""
    entries = table_of(AuditEntry)
    result = connection.execute(insert(entries).values(
        time=now, token_id=draft.token_id, role=draft.role, method=draft.method,
        path=draft.path, action=draft.action, kind=draft.kind, namespace=draft.namespace,
        name=None if draft.name is None else draft.name[:253],
        before_version=draft.before_version, after_version=after_version, status=status,
        outcome=outcome))
    new_id = (result.inserted_primary_key or [None])[0]
    if isinstance(new_id, int) and new_id % PRUNE_EVERY == 0:
        prune(connection, newest_id=new_id, now=now, retention=retention)


def prune(connection: Connection, *, newest_id: int, now: int, retention: AuditRetention) -> int:
    """Delete rows beyond the retention; returns how many."""
    entries = table_of(AuditEntry)
    oldest = now - retention.max_age_days * 86_400
    result = connection.execute(delete(entries).where(or_(
        entries.c.id <= newest_id - retention.max_rows, entries.c.time < oldest)))
    return int(result.rowcount or 0)


def iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def to_wire(entry: AuditEntry) -> dict[str, Any]:
    return {"time": iso(entry.time), "tokenId": entry.token_id, "role": entry.role,
            "action": entry.action, "kind": entry.kind, "namespace": entry.namespace,
            "name": entry.name, "beforeVersion": entry.before_version,
            "afterVersion": entry.after_version, "status": entry.status,
            "outcome": entry.outcome, "path": entry.path, "id": entry.id}


def list_entries(
    session: Session, *, visible: list[str] | None, namespace: str | None = None,
    token: int | None = None, kind: str | None = None, since: int | None = None,
    limit: int, continue_token: str | None = None,
) -> Page:
    """Newest first. ``visible``: the namespaces the caller sees (None: all, and entries of
    no namespace, such as tokens and namespaces, are only for those who see all)."""
    query = select(AuditEntry).order_by(col(AuditEntry.id).desc()).limit(limit + 1)
    if visible is not None:
        query = query.where(col(AuditEntry.namespace).in_(visible))
    if namespace is not None:
        query = query.where(col(AuditEntry.namespace) == namespace)
    if token is not None:
        query = query.where(col(AuditEntry.token_id) == token)
    if kind is not None:
        query = query.where(col(AuditEntry.kind) == kind)
    if since is not None:
        query = query.where(col(AuditEntry.time) >= since)
    if continue_token is not None:
        query = query.where(col(AuditEntry.id) < decode_continue(continue_token, "audit", int))
    rows = list(session.scalars(query).all())
    more = len(rows) > limit
    rows = rows[:limit]
    after = encode_continue("audit", rows[-1].id) if more and rows else None
    return Page(items=[to_wire(row) for row in rows], continue_token=after)


def token_identity(token: ApiToken) -> tuple[int | None, str]:
    return token.id, str(token.role)
