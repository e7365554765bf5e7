"""The fake's object store: every write goes through here, as through the real apiserver.

One lock guards one dict keyed by (kind, namespace, name). Writes build a candidate
object, let ``ownership`` compute ``managedFields``, let ``validating`` refuse it, then
commit it with the metadata the real server maintains: ``uid`` (kept for the object's
life), ``creationTimestamp``, a global ``resourceVersion`` bumped on every change (and only
on a change: a write that changes nothing, like re-applying the same configuration,
stores nothing, as in Kubernetes) and, for types that have it, ``generation`` bumped only
when ``.spec`` changes. Namespaced objects need their namespace; deleting a Namespace
deletes what is in it (at once: the fake has no Terminating phase). A Service gets a
``spec.clusterIP`` when created (from K3s' default 10.43.0.0/16, or the one address the
test chose with ``cluster_ip``) and keeps it: it is immutable, as on a real cluster.
"""

from __future__ import annotations

import copy
import ipaddress
import itertools
import random
import string
import threading
from collections.abc import Callable
from typing import Any

from tests.fake_kube import ownership
from tests.fake_kube.merging import (
    PatchError,
    json_merge_patch,
    json_patch,
    strategic_merge_patch,
)
from tests.fake_kube.metadata import NAMESPACE_SEEDS, now, scoped, stamp, unchanged
from tests.fake_kube.resources import NAMESPACE, ResourceType, by_kind
from tests.fake_kube.selectors import (
    SelectorError,
    fields_match,
    labels_match,
    parse_field_selector,
    parse_label_selector,
)
from tests.fake_kube.statuses import KubeError, already_exists, not_found, stale
from tests.fake_kube.validating import normalize, validate

APPLY = "application/apply-patch+yaml"
PATCHERS: dict[str, Callable[[Any, Any], Any]] = {
    "application/merge-patch+json": json_merge_patch,
    "application/strategic-merge-patch+json": strategic_merge_patch,
    "application/json-patch+json": json_patch,
}
BUILTIN_NAMESPACES = ("default", "kube-system", "kube-public")
CONTROLLER = "kube-controller-manager"

Key = tuple[str, str, str]


class Store:
    """Objects by (kind, namespace, name), and the API server's rules for changing them."""

    def __init__(self, *, namespace_defaults: bool = True, cluster_ip: str | None = None) -> None:
        self._lock = threading.RLock()
        self._objects: dict[Key, dict[str, Any]] = {}
        self._version = 0
        self._namespace_defaults = namespace_defaults
        first = int(ipaddress.IPv4Address("10.43.0.10"))
        self._cluster_ips = (
            itertools.repeat(cluster_ip) if cluster_ip
            else (str(ipaddress.IPv4Address(first + n)) for n in itertools.count())
        )
        for name in BUILTIN_NAMESPACES:
            self.create(NAMESPACE, None, {"metadata": {"name": name}}, manager="kube-apiserver")

    # -- reads -------------------------------------------------------------------------
    def get(self, rt: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
        with self._lock:
            obj = self._objects.get((rt.kind, namespace or "", name))
            if obj is None:
                raise not_found(rt, name)
            return copy.deepcopy(obj)

    def list(
        self, rt: ResourceType, namespace: str | None, *, labels: str = "", fields: str = ""
    ) -> dict[str, Any]:
        """A ``<Kind>List``; items lack kind/apiVersion, as in the real server's lists."""
        try:
            label_reqs = parse_label_selector(labels)
            field_reqs = parse_field_selector(fields, rt.field_selectors)
        except SelectorError as exc:
            raise KubeError("BadRequest", str(exc)) from None
        with self._lock:
            items = []
            for (kind, ns, _), obj in sorted(self._objects.items()):
                if kind != rt.kind or (namespace is not None and ns != namespace):
                    continue
                if labels_match(label_reqs, obj["metadata"].get("labels") or {}) and (
                    fields_match(field_reqs, obj)
                ):
                    item = copy.deepcopy(obj)
                    del item["apiVersion"], item["kind"]
                    items.append(item)
            return {
                "kind": f"{rt.kind}List",
                "apiVersion": rt.api_version,
                "metadata": {"resourceVersion": str(self._version)},
                "items": items,
            }

    # -- writes ------------------------------------------------------------------------
    def create(
        self, rt: ResourceType, namespace: str | None, body: dict[str, Any], *,
        manager: str, dry_run: bool = False,
    ) -> dict[str, Any]:
        obj = normalize(copy.deepcopy(body), rt)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            suffix = "".join(random.choices(string.ascii_lowercase + string.digits, k=5))
            meta["name"] = meta["generateName"] + suffix
        with self._lock:
            key = self._key(rt, namespace, meta, meta.get("name", ""))
            if key in self._objects:
                raise already_exists(rt, key[2])
            entries = ownership.record_update(
                None, obj, rt=rt, manager=manager, subresource="", now=now()
            )
            return self._commit(rt, key, None, obj, entries, dry_run=dry_run)

    def replace(
        self, rt: ResourceType, namespace: str | None, name: str, body: dict[str, Any], *,
        manager: str, subresource: str = "", dry_run: bool = False,
    ) -> dict[str, Any]:
        obj = normalize(copy.deepcopy(body), rt)
        with self._lock:
            key = self._key(rt, namespace, obj.setdefault("metadata", {}), name)
            old = self._existing(rt, key)
            rv = obj["metadata"].get("resourceVersion")
            if rv and rv != old["metadata"]["resourceVersion"]:
                raise stale(rt, name)
            obj = scoped(rt, old, obj, subresource)
            entries = ownership.record_update(
                old, obj, rt=rt, manager=manager, subresource=subresource, now=now()
            )
            return self._commit(rt, key, old, obj, entries, dry_run=dry_run)

    def patch(
        self, rt: ResourceType, namespace: str | None, name: str, body: Any, *,
        content_type: str, manager: str | None, subresource: str = "", force: bool = False,
        dry_run: bool = False,
    ) -> tuple[dict[str, Any], bool]:
        """The patched (or, for apply, possibly created) object, and whether it is new."""
        with self._lock:
            key = self._key(rt, namespace, {}, name)
            if content_type == APPLY:
                return self._apply(rt, key, body, manager, subresource, force, dry_run)
            if force:
                raise KubeError("BadRequest", "force may only be set for apply patches")
            patcher = PATCHERS.get(content_type)
            if patcher is None:
                raise KubeError("UnsupportedMediaType", f"unsupported patch {content_type!r}")
            old = self._existing(rt, key)
            try:
                obj = normalize(patcher(old, body), rt)
            except (PatchError, TypeError, AttributeError) as exc:
                raise KubeError("BadRequest", f"cannot apply the patch: {exc}") from None
            if obj.get("metadata", {}).get("resourceVersion") != old["metadata"]["resourceVersion"]:
                raise stale(rt, name)  # the patch carried a resourceVersion precondition
            obj = scoped(rt, old, obj, subresource)
            entries = ownership.record_update(
                old, obj, rt=rt, manager=manager or "unknown", subresource=subresource, now=now()
            )
            return self._commit(rt, key, old, obj, entries, dry_run=dry_run), False

    def _apply(
        self, rt: ResourceType, key: Key, body: Any, manager: str | None, subresource: str,
        force: bool, dry_run: bool,
    ) -> tuple[dict[str, Any], bool]:
        if not manager:
            raise KubeError("BadRequest", "fieldManager is required for apply requests")
        if not isinstance(body, dict) or not body.get("apiVersion") or not body.get("kind"):
            raise KubeError(
                "BadRequest", "an apply configuration is an object with apiVersion and kind"
            )
        applied = normalize(copy.deepcopy(body), rt)
        meta = applied.get("metadata") or {}
        if meta.get("managedFields") is not None:
            raise KubeError("BadRequest", "metadata.managedFields must be nil")
        self._key(rt, key[1] or None, meta, key[2])  # name/namespace must agree with the URL
        old = self._objects.get(key)
        if old is None and subresource:
            raise not_found(rt, key[2])
        rv = meta.get("resourceVersion")
        if old is not None and rv not in (None, old["metadata"]["resourceVersion"]):
            raise stale(rt, key[2])
        if rt.status_subresource:  # the other half of the object is not this write's
            if subresource:
                kept = ("kind", "apiVersion", "status")
                applied = {k: v for k, v in applied.items() if k in kept}
            else:
                applied.pop("status", None)
        identity = {"name": key[2], **({"namespace": key[1]} if key[1] else {})}
        live = old or {"apiVersion": rt.api_version, "kind": rt.kind, "metadata": identity}
        merged, entries = ownership.apply(
            live, applied, rt=rt, manager=manager, subresource=subresource, force=force, now=now()
        )
        return self._commit(rt, key, old, merged, entries, dry_run=dry_run), old is None

    def set_status(
        self, rt: ResourceType, namespace: str | None, name: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        """What a controller does: PUT ``/status``, as ``kube-controller-manager``."""
        with self._lock:
            old = self._existing(rt, (rt.kind, namespace or "", name))
            body = {**copy.deepcopy(old), "status": status}
            return self.replace(
                rt, namespace, name, body, manager=CONTROLLER, subresource="status"
            )

    def delete(
        self, rt: ResourceType, namespace: str | None, name: str, *,
        preconditions: dict[str, Any] | None = None, dry_run: bool = False,
    ) -> dict[str, Any]:
        with self._lock:
            key = (rt.kind, namespace or "", name)
            obj = copy.deepcopy(self._existing(rt, key))
            for field in ("uid", "resourceVersion"):
                wanted = (preconditions or {}).get(field)
                actual = obj["metadata"][field]
                if wanted and wanted != actual:
                    raise KubeError(
                        "Conflict", f"Precondition failed: {field} in precondition: {wanted}, "
                        f"{field} in object meta: {actual}",
                    )
            if dry_run:
                return obj
            del self._objects[key]
            if rt is NAMESPACE:
                for doomed in [k for k in self._objects if k[1] == name]:
                    del self._objects[doomed]
                obj["status"] = {"phase": "Terminating"}
            self._version += 1
            obj["metadata"]["deletionTimestamp"] = now()
            return obj

    # -- helpers -----------------------------------------------------------------------
    def _key(
        self, rt: ResourceType, namespace: str | None, meta: dict[str, Any], name: str
    ) -> Key:
        """Check the body's name/namespace against the URL's; the namespace must exist."""
        if meta.get("name") and meta["name"] != name:
            raise KubeError(
                "BadRequest",
                f"the name of the object ({meta['name']}) does not match the name on the URL "
                f"({name})",
            )
        if not rt.namespaced:
            meta.pop("namespace", None)
            return (rt.kind, "", name)
        if meta.get("namespace") and meta["namespace"] != namespace:
            raise KubeError(
                "BadRequest", "the namespace of the provided object does not match the "
                "namespace sent on the request",
            )
        if not namespace:
            raise KubeError("BadRequest", f"{rt.kind} is namespaced: the request needs a namespace")
        if (NAMESPACE.kind, "", namespace) not in self._objects:
            raise not_found(NAMESPACE, namespace)
        meta["namespace"] = namespace
        return (rt.kind, namespace, name)

    def _allocate_cluster_ip(self, old: dict[str, Any] | None, obj: dict[str, Any]) -> None:
        """What the apiserver's allocator does: a new Service gets an address; an update
        that leaves the field out keeps the old one."""
        spec = obj.setdefault("spec", {})
        if spec.get("type") == "ExternalName" or spec.get("clusterIP"):
            return
        kept = ((old or {}).get("spec") or {}).get("clusterIP")
        spec["clusterIP"] = kept or next(self._cluster_ips)
        spec["clusterIPs"] = [spec["clusterIP"]]

    def _existing(self, rt: ResourceType, key: Key) -> dict[str, Any]:
        obj = self._objects.get(key)
        if obj is None:
            raise not_found(rt, key[2])
        return obj

    def _commit(
        self, rt: ResourceType, key: Key, old: dict[str, Any] | None, obj: dict[str, Any],
        entries: list[ownership.Entry], *, dry_run: bool,
    ) -> dict[str, Any]:
        stamp(rt, old, obj)
        if rt.kind == "Service":
            self._allocate_cluster_ip(old, obj)
        obj["metadata"].pop("managedFields", None)
        entries = ownership.prune(entries, obj)
        if entries:
            obj["metadata"]["managedFields"] = ownership.write_entries(entries)
        validate(obj, rt, old)
        if old is not None and unchanged(old, obj):
            return copy.deepcopy(old)
        if not dry_run:
            self._version += 1
            obj["metadata"]["resourceVersion"] = str(self._version)
            self._objects[key] = obj
            if old is None and rt is NAMESPACE and self._namespace_defaults:
                for kind, body in NAMESPACE_SEEDS:
                    self.create(by_kind(kind), key[2], body, manager=CONTROLLER)
        return copy.deepcopy(obj)
