"""What the API server itself writes into objects, apart from ``managedFields``.

Pure functions over plain dicts, used by ``store`` on every write: identity and timestamps
on create, ``generation`` bumped only by ``.spec`` changes, status kept apart from spec
for types with a status subresource, the defaults a new object gets, and the test that
tells a real change from a no-op (no-ops store nothing and keep ``resourceVersion``).
"""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime
from typing import Any

from tests.fake_kube.resources import NAMESPACE, ResourceType

_CA = "-----BEGIN CERTIFICATE-----\nZmFrZQ==\n-----END CERTIFICATE-----\n"
# what controllers add to every new namespace on a real cluster: (kind, body)
NAMESPACE_SEEDS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("ServiceAccount", {"metadata": {"name": "default"}}),
    ("ConfigMap", {"metadata": {"name": "kube-root-ca.crt"}, "data": {"ca.crt": _CA}}),
)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def stamp(rt: ResourceType, old: dict[str, Any] | None, obj: dict[str, Any]) -> None:
    """Set the server-owned metadata of ``obj``, written over ``old`` (None: a create)."""
    meta = obj["metadata"]
    for field in ("labels", "annotations"):  # Go's omitempty: an empty map is not written
        if meta.get(field) == {}:
            del meta[field]
    if old is None:
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=now(), resourceVersion="")
        if rt.generation:
            meta["generation"] = 1
        if rt.status_subresource:
            obj["status"] = copy.deepcopy(rt.initial_status)
        if rt is NAMESPACE:
            meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta.get("name", "")
            obj.setdefault("spec", {"finalizers": ["kubernetes"]})
        return
    for field in ("uid", "creationTimestamp", "resourceVersion", "generation"):
        if field in old["metadata"]:
            meta[field] = old["metadata"][field]
    if rt.generation and old.get("spec") != obj.get("spec"):
        meta["generation"] = old["metadata"]["generation"] + 1


def scoped(
    rt: ResourceType, old: dict[str, Any], new: dict[str, Any], subresource: str
) -> dict[str, Any]:
    """Main-resource writes keep the old status; ``/status`` writes keep everything else."""
    if not rt.status_subresource:
        return new
    if subresource == "status":
        return {**copy.deepcopy(old), "status": new.get("status", {})}
    return {**new, "status": copy.deepcopy(old.get("status", {}))}


def _comparable(obj: dict[str, Any]) -> dict[str, Any]:
    clone = copy.deepcopy(obj)
    clone["metadata"].pop("resourceVersion", None)
    for entry in clone["metadata"].get("managedFields", []):
        entry.pop("time", None)
    return clone


def unchanged(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Is writing ``new`` over ``old`` a no-op (content and ownership alike)?"""
    return _comparable(old) == _comparable(new)
