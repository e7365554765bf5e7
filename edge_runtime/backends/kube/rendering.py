"""An app bundle as the Kubernetes objects that run it: the backend's whole plan.

``render`` turns one ``AppBundle`` into plain manifests, in the order they are applied:
a ConfigMap per pinned config, a Secret per pinned secret, a ``kubernetes.io/tls``
Secret per certificate and a ``kubernetes.io/dockerconfigjson`` Secret per registry,
then a ClusterIP Service per service with ports (and per function service: the node's
function proxy reaches the runtime through it; it is annotated ``tether.io/function``),
then a Deployment (or DaemonSet) per service. Data goes first so pods never start before
what they mount exists, and the workloads -- whose version annotation ``observe`` reads
-- go last.

Pure, and deterministic: the same bundle always renders the same objects, so applying
them twice changes nothing, and what ``apply`` must prune is simply every object of the
app that this list no longer holds (``stale``). Names and labels: ``naming``; pod
templates: ``podspecs``.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from edge_runtime.backends.base import AppBundle
from edge_runtime.backends.kube import naming
from edge_runtime.backends.kube.podspecs import (
    DEFAULT_FUNCTION_RUNTIME,
    FUNCTION_PORT_NAME,
    FunctionRuntime,
    data_object_name,
    pinned_content,
    pod_template,
    runs_function_runtime,
)
from edge_runtime.errors import BackendError
from schemas.resources import Registry, ResourceKind, Service

Manifest = dict[str, Any]
ObjectKey = tuple[str, str]
"""(kind, name): what identifies an object in the backend's namespace."""

_DATA_KEY = re.compile(r"[-._a-zA-Z0-9]{1,253}")
_SECRET_TYPES = {
    ResourceKind.SECRET: "Opaque",
    ResourceKind.CERTIFICATE: "kubernetes.io/tls",
}


def render(
    bundle: AppBundle, *, namespace: str, functions: FunctionRuntime = DEFAULT_FUNCTION_RUNTIME
) -> list[Manifest]:
    """Every object that runs ``bundle`` in ``namespace``, in the order to apply them.

    Raises ``BackendError`` (not retryable) when the bundle lacks a pinned resource, a
    config key cannot be a Kubernetes data key, or a service has no image.
    """
    app = bundle.app
    objects: list[Manifest] = []
    for kind, name in _pinned(bundle):
        objects.append(_data_object(bundle, kind, name, namespace))
    for ref in app.registries:
        objects.append(_pull_secret(bundle, ref.name, namespace))
    for service in app.services:
        if service.ports or runs_function_runtime(bundle, service):
            objects.append(_service(bundle, service, namespace, functions))
    for service in app.services:
        objects.append(_workload(bundle, service, namespace, functions))
    return objects


def namespace_manifest(namespace: str) -> Manifest:
    """The namespace the backend's objects live in (ensured, never deleted by Tether)."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": namespace, "labels": {naming.MANAGED_BY: naming.MANAGER}},
    }


def key(obj: Manifest) -> ObjectKey:
    return (obj["kind"], obj["metadata"]["name"])


def stale(rendered: list[Manifest], live: list[ObjectKey]) -> list[ObjectKey]:
    """The live objects of an app that the rendered list no longer holds: to prune."""
    wanted = {key(obj) for obj in rendered}
    return [found for found in live if found not in wanted]


def _pinned(bundle: AppBundle) -> list[tuple[ResourceKind, str]]:
    """Each pinned (kind, name) the app's volumes use, once, in declaration order."""
    seen: list[tuple[ResourceKind, str]] = []
    for volume in bundle.app.volumes:
        pinned = volume.pinned()
        if pinned is not None and (pinned[0], pinned[1].name) not in seen:
            seen.append((pinned[0], pinned[1].name))
    return seen


def _metadata(
    bundle: AppBundle, name: str, namespace: str, *, service: str | None = None
) -> dict[str, Any]:
    labels = naming.app_labels(bundle.name, bundle.version, service=service)
    return naming.metadata(name, namespace, labels, version=bundle.version)


def _data_object(bundle: AppBundle, kind: ResourceKind, name: str, namespace: str) -> Manifest:
    data = pinned_content(bundle, kind, name)
    for data_key in data:
        if not _DATA_KEY.fullmatch(data_key):
            raise BackendError(
                f"{kind.value} {name!r} of app {bundle.name!r} has key {data_key!r}, which "
                "Kubernetes cannot mount as a file: use letters, digits, '-', '_' and '.'"
            )
    meta = _metadata(bundle, data_object_name(bundle.name, kind, name), namespace)
    if kind is ResourceKind.CONFIG:
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": meta,
        "type": _SECRET_TYPES[kind],
        "data": {k: _b64(v) for k, v in data.items()},
    }


def _pull_secret(bundle: AppBundle, name: str, namespace: str) -> Manifest:
    registry = bundle.registries.get(name)
    if registry is None:
        raise BackendError(
            f"app {bundle.name!r} version {bundle.version!r} pins registry {name!r}, which "
            "its bundle lacks: fetch every resource the app references before applying it"
        )
    meta = _metadata(bundle, data_object_name(bundle.name, ResourceKind.REGISTRY, name), namespace)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": meta,
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": _b64(docker_config(registry))},
    }


def docker_config(registry: Registry) -> str:
    """The ``.dockerconfigjson`` document that lets the kubelet pull from ``registry``."""
    credentials: dict[str, str] = {}
    if registry.username or registry.password:
        credentials = {
            "username": registry.username,
            "password": registry.password,
            "auth": _b64(f"{registry.username}:{registry.password}"),
        }
    return json.dumps({"auths": {registry.address: credentials}}, sort_keys=True)


def _service(
    bundle: AppBundle, service: Service, namespace: str, functions: FunctionRuntime
) -> Manifest:
    ports = [
        {
            "name": port.name or f"{port.protocol.lower()}-{port.container_port}",
            "port": port.service_port or port.container_port,
            "targetPort": port.container_port,
            "protocol": port.protocol,
        }
        for port in service.ports
    ]
    metadata = _metadata(
        bundle, naming.object_name(bundle.name, service.name), namespace, service=service.name
    )
    if runs_function_runtime(bundle, service):
        ports.insert(0, {"name": FUNCTION_PORT_NAME, "port": functions.port,
                         "targetPort": FUNCTION_PORT_NAME, "protocol": "TCP"})
        metadata["annotations"][naming.FUNCTION] = str(functions.port)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {
            "type": "ClusterIP",
            "selector": naming.selector_labels(bundle.name, service.name),
            "ports": ports,
        },
    }


def _workload(
    bundle: AppBundle, service: Service, namespace: str, functions: FunctionRuntime
) -> Manifest:
    spec: dict[str, Any] = {
        "selector": {"matchLabels": naming.selector_labels(bundle.name, service.name)},
        "template": pod_template(bundle, service, functions),
    }
    kind = "DaemonSet"
    if service.workload == "deployment":
        kind = "Deployment"
        spec = {"replicas": service.replicas, **spec}
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": _metadata(
            bundle, naming.object_name(bundle.name, service.name), namespace,
            service=service.name,
        ),
        "spec": spec,
    }


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()
