"""Turning a request path into what it names: a discovery document or a resource route.

Kubernetes paths are regular: ``/api/v1`` or ``/apis/<group>/<version>``, then optionally
``namespaces/<ns>``, then ``<plural>[/<name>[/<subresource>]]``. The one irregularity is
the Namespace type itself (``/api/v1/namespaces/<name>[/status]``), resolved by looking
the segment after the namespace up in the table.
"""

from __future__ import annotations

from dataclasses import dataclass

from tests.fake_kube.resources import NAMESPACE, ResourceType, by_plural
from tests.fake_kube.statuses import KubeError

SUBRESOURCES = ("status",)


@dataclass(frozen=True)
class Route:
    """A resource request: collection when ``name`` is None."""

    rt: ResourceType
    namespace: str | None
    name: str | None
    subresource: str = ""


@dataclass(frozen=True)
class Discovery:
    """A discovery document: ``what`` is version/api/apis/group/resources."""

    what: str
    group: str = ""
    version: str = ""


def _not_found(path: str) -> KubeError:
    return KubeError("NotFound", f"the server could not find the requested resource ({path})")


def parse(path: str) -> Route | Discovery:
    parts = [part for part in path.split("/") if part]
    if parts == ["version"]:
        return Discovery("version")
    if parts == ["api"]:
        return Discovery("api")
    if parts == ["apis"]:
        return Discovery("apis")
    if parts[:1] == ["api"] and len(parts) >= 2:
        group, version, rest = "", parts[1], parts[2:]
    elif parts[:1] == ["apis"] and len(parts) == 2:
        return Discovery("group", group=parts[1])
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        raise _not_found(path)
    if not rest:
        return Discovery("resources", group=group, version=version)
    if rest[0] == "watch":
        raise KubeError("BadRequest", "watch is not supported by the fake Kubernetes API server")
    namespace = None
    if rest[0] == "namespaces" and len(rest) >= 3:
        if (group, version) == ("", "v1") and len(rest) == 3 and rest[2] in SUBRESOURCES:
            return Route(NAMESPACE, None, rest[1], rest[2])  # /api/v1/namespaces/<n>/status
        namespace, rest = rest[1], rest[2:]
    rt = by_plural(group, version, rest[0])
    if rt is None or len(rest) > 3:
        raise _not_found(path)
    if len(rest) == 3 and (rest[2] not in SUBRESOURCES or not rt.status_subresource):
        raise _not_found(path)
    if namespace is not None and not rt.namespaced:
        raise _not_found(path)
    name = rest[1] if len(rest) >= 2 else None
    return Route(rt, namespace, name, rest[2] if len(rest) == 3 else "")
