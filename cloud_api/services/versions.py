"""The versions of a resource, listed and compared: ``tether rollout history``, ``tether diff``.

Why it exists: every version of an app, config, secret, certificate or registry is kept,
immutable (``store.models.resources.ResourceVersion``); an operator asks what changed
between two of them before rolling one back or out. ``diff`` is pure: two public views in,
the changed paths out (a secret's view holds its key names only, never a value).
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from cloud_api.errors import NotFound
from cloud_api.services.resources import get_resource, get_version
from cloud_api.store.models import ResourceVersion
from schemas.resources import ResourceKind


def list_versions(session: Session, namespace: str, kind: ResourceKind, name: str) -> dict[str, Any]:
    """Every version of a resource, newest first, with what changed from the one before."""
    resource, _ = get_resource(session, namespace, kind, name)
    rows = session.exec(
        select(ResourceVersion).where(
            col(ResourceVersion.namespace) == namespace, col(ResourceVersion.kind) == kind.value,
            col(ResourceVersion.name) == name,
        ).order_by(col(ResourceVersion.version))
    ).all()
    items = []
    before: dict[str, Any] | None = None
    for row in rows:
        changes = diff(before, row.spec) if before is not None else []
        items.append({"version": str(row.version), "createdAt": row.created_at,
                      "current": row.version == resource.version,
                      "changed": sorted({change["path"] for change in changes})})
        before = row.spec
    return {"kind": kind.value, "name": name, "items": items[::-1]}


def diff_versions(
    session: Session, namespace: str, kind: ResourceKind, name: str, *,
    old: str | None = None, new: str | None = None,
) -> dict[str, Any]:
    """The changes from version ``old`` (default: the one before ``new``) to ``new``
    (default: the current one); 404 naming a version that does not exist."""
    resource, _ = get_resource(session, namespace, kind, name)
    new = new if new is not None else str(resource.version)
    if old is None:
        if not new.isdigit() or int(new) < 2:
            raise NotFound(f"{kind.value} {namespace}/{name} has no version before {new!r}: "
                           "name the two to compare (from, to)")
        old = str(int(new) - 1)
    specs = []
    for version in (old, new):
        row = get_version(session, namespace, kind, name, int(version)) if version.isdigit() else None
        if row is None:
            raise NotFound(f"{kind.value} {namespace}/{name} has no version {version!r}: "
                           f"see `tether rollout history {name}` for those kept")
        specs.append(row.spec)
    return {"kind": kind.value, "name": name, "from": old, "to": new,
            "changes": diff(specs[0], specs[1])}


def diff(old: Any, new: Any, path: str = "") -> list[dict[str, Any]]:
    """Where ``new`` differs from ``old``: ``[{"path", "from"?, "to"?}]`` in path order
    (a key only in ``old`` has no ``to``; only in ``new``, no ``from``). Lists of equal
    length are compared item by item, others replaced whole."""
    if isinstance(old, dict) and isinstance(new, dict):
        changes = []
        for key in sorted(old.keys() | new.keys()):
            where = f"{path}.{key}" if path else str(key)
            if key not in new:
                changes.append({"path": where, "from": old[key]})
            elif key not in old:
                changes.append({"path": where, "to": new[key]})
            else:
                changes.extend(diff(old[key], new[key], where))
        return changes
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [change for index, (a, b) in enumerate(zip(old, new, strict=True))
                for change in diff(a, b, f"{path}[{index}]")]
    return [] if old == new else [{"path": path, "from": old, "to": new}]
