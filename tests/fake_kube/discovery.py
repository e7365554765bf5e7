"""Discovery documents: what clients read to learn which APIs the server has.

``kubernetes.dynamic.DynamicClient``, ``kubectl`` and version checks read ``/version``,
``/api``, ``/apis`` and the per-group-version ``APIResourceList``s before they touch a
resource; all of them are generated here from the ``resources`` table, so a type added
there is discoverable at once.
"""

from __future__ import annotations

from typing import Any

from tests.fake_kube.resources import (
    READ_VERBS,
    WRITE_VERBS,
    ResourceType,
    group_versions,
    in_group_version,
)


def version(schema_version: str) -> dict[str, Any]:
    major, minor = schema_version.split(".")[:2]
    return {
        "major": major,
        "minor": minor,
        "gitVersion": f"v{major}.{minor}.0-fake",
        "gitCommit": "0" * 40,
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    }


def api_versions(address: str) -> dict[str, Any]:
    """``/api``: the core group's versions."""
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}],
    }


def _group(name: str, versions: list[str]) -> dict[str, Any]:
    listed = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": listed, "preferredVersion": listed[0]}


def api_group_list() -> dict[str, Any]:
    """``/apis``: every non-core group."""
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_group(name, versions) for name, versions in group_versions().items()],
    }


def api_group(name: str) -> dict[str, Any] | None:
    """``/apis/<group>``, or None when the fake does not serve the group."""
    versions = group_versions().get(name)
    if versions is None:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(name, versions)}


def _entries(rt: ResourceType) -> list[dict[str, Any]]:
    main = {
        "name": rt.plural,
        "singularName": rt.singular,
        "namespaced": rt.namespaced,
        "kind": rt.kind,
        "verbs": sorted((*READ_VERBS, *WRITE_VERBS)),
    }
    if rt.short_names:
        main["shortNames"] = list(rt.short_names)
    if not rt.status_subresource:
        return [main]
    status = {
        "name": f"{rt.plural}/status",
        "singularName": "",
        "namespaced": rt.namespaced,
        "kind": rt.kind,
        "verbs": ["get", "patch", "update"],
    }
    return [main, status]


def resource_list(group: str, version_name: str) -> dict[str, Any] | None:
    """``/api/v1`` or ``/apis/<group>/<version>``, or None when not served."""
    types = in_group_version(group, version_name)
    if not types:
        return None
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version_name}" if group else version_name,
        "resources": [entry for rt in types for entry in _entries(rt)],
    }
