"""The table of Kubernetes resource types the fake API server serves.

Everything else in the fake (routing, discovery, storage, validation) is generic and reads
this table, so serving one more built-in type is one more ``ResourceType`` line here. The
flags mirror how the real API server treats each type: whether it is namespaced, whether
``.status`` is a subresource (so main-resource writes cannot change it), whether it carries
``metadata.generation``, and what a DELETE answers with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

READ_VERBS = ("get", "list")  # no "watch": the fake refuses watches
WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")


@dataclass(frozen=True)
class ResourceType:
    """One served resource: where it lives in the URL space and how the server treats it."""

    group: str  # "" for the core group
    version: str
    kind: str
    plural: str
    namespaced: bool = True
    status_subresource: bool = False
    generation: bool = False  # metadata.generation kept and bumped on .spec changes
    initial_status: dict[str, Any] | None = None  # what create leaves in .status
    delete_returns_object: bool = False  # DELETE answers with the object, not a Status
    field_selectors: tuple[str, ...] = ()  # beyond metadata.name and metadata.namespace
    immutable: tuple[tuple[str, ...], ...] = ()  # paths an update may not change
    short_names: tuple[str, ...] = field(default=())

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def qualified_plural(self) -> str:
        """``deployments.apps`` / ``configmaps``: how the real server names a type in errors."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


_TEMPLATE_SELECTOR = (("spec", "selector"),)
# DaemonSetStatus fields that are not omitempty: the server always writes them
_DAEMONSET_COUNTS = (
    "currentNumberScheduled", "desiredNumberScheduled", "numberMisscheduled", "numberReady",
)

RESOURCE_TYPES: tuple[ResourceType, ...] = (
    ResourceType(
        "", "v1", "Namespace", "namespaces", namespaced=False, status_subresource=True,
        initial_status={"phase": "Active"}, delete_returns_object=True,
        field_selectors=("status.phase",), short_names=("ns",),
    ),
    ResourceType("", "v1", "ConfigMap", "configmaps", short_names=("cm",)),
    ResourceType("", "v1", "Secret", "secrets", field_selectors=("type",), immutable=(("type",),)),
    ResourceType("", "v1", "ServiceAccount", "serviceaccounts", short_names=("sa",)),
    ResourceType(
        "", "v1", "Service", "services", status_subresource=True,
        initial_status={"loadBalancer": {}}, delete_returns_object=True, short_names=("svc",),
        immutable=(("spec", "clusterIP"),),
    ),
    ResourceType(
        "", "v1", "Pod", "pods", status_subresource=True, generation=True,
        initial_status={"phase": "Pending"}, delete_returns_object=True,
        field_selectors=("status.phase", "spec.nodeName", "spec.serviceAccountName"),
        short_names=("po",),
    ),
    ResourceType(
        "apps", "v1", "Deployment", "deployments", status_subresource=True, generation=True,
        initial_status={}, immutable=_TEMPLATE_SELECTOR, short_names=("deploy",),
    ),
    ResourceType(
        "apps", "v1", "DaemonSet", "daemonsets", status_subresource=True, generation=True,
        initial_status=dict.fromkeys(_DAEMONSET_COUNTS, 0), immutable=_TEMPLATE_SELECTOR,
        short_names=("ds",),
    ),
    ResourceType("rbac.authorization.k8s.io", "v1", "Role", "roles"),
    ResourceType(
        "rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings",
        immutable=(("roleRef",),),
    ),
)

_BY_KIND = {rt.kind: rt for rt in RESOURCE_TYPES}
_BY_PLURAL = {(rt.group, rt.version, rt.plural): rt for rt in RESOURCE_TYPES}

NAMESPACE = _BY_KIND["Namespace"]


def by_kind(kind: str) -> ResourceType:
    """The type of a kind name (``"Deployment"``); KeyError names the kinds served."""
    try:
        return _BY_KIND[kind]
    except KeyError:
        raise KeyError(f"the fake serves no kind {kind!r}; it serves {sorted(_BY_KIND)}") from None


def by_plural(group: str, version: str, plural: str) -> ResourceType | None:
    return _BY_PLURAL.get((group, version, plural))


def group_versions() -> dict[str, list[str]]:
    """Each non-core group and its versions, in table order."""
    groups: dict[str, list[str]] = {}
    for rt in RESOURCE_TYPES:
        if rt.group and rt.version not in groups.setdefault(rt.group, []):
            groups[rt.group].append(rt.version)
    return groups


def in_group_version(group: str, version: str) -> list[ResourceType]:
    return [rt for rt in RESOURCE_TYPES if rt.group == group and rt.version == version]
