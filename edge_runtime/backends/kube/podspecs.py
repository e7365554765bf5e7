"""The pod template of one service: its container, volumes, pull secrets and labels.

Split from ``rendering`` because the pod template is where most of an app model's fields
land (image, command, env, ports, resources, mounts) and where the two rules that keep
rollouts right live: the template carries the version (so a new version rolls the pods)
and a hash of the content it mounts (so a changed config or secret rolls them too, even
though Kubernetes would only update mounted files in place).

Pure: models in, plain dicts out.
"""

from __future__ import annotations

import json
import re
from typing import Any

from edge_runtime.backends.base import AppBundle
from edge_runtime.backends.kube import naming
from edge_runtime.errors import BackendError
from schemas.resources import AppType, Port, ResourceKind, Service, Volume, VolumeMount

DEFAULT_FUNCTION_IMAGE = "tether/function-runtime:latest"
"""The image a function service runs when it names none: it loads ``handler`` from the
code mounted from a config (the function runtime issue settles the image and protocol)."""
HANDLER_ENV = "TETHER_FUNCTION_HANDLER"
"""Tells the function runtime which ``module.function`` to call."""

# Kubernetes' IANA_SVC_NAME: what a container port's name must be (also: <= 15, a letter)
_PORT_NAME = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")
_ROLES = {
    ResourceKind.CONFIG: "cfg",
    ResourceKind.SECRET: "sec",
    ResourceKind.CERTIFICATE: "tls",
    ResourceKind.REGISTRY: "reg",
}


def data_object_name(app: str, kind: ResourceKind, name: str) -> str:
    """The ConfigMap/Secret holding the pinned ``kind`` resource ``name`` for ``app``."""
    return naming.object_name(app, _ROLES[kind], name)


def pod_template(bundle: AppBundle, service: Service) -> dict[str, Any]:
    """``spec.template`` of the service's Deployment or DaemonSet."""
    app = bundle.app
    mounted = {mount.name for mount in service.volume_mounts}
    volumes = [volume for volume in app.volumes if volume.name in mounted]
    spec: dict[str, Any] = {"containers": [_container(bundle, service)]}
    if volumes:
        spec["volumes"] = [_volume(app.name, volume) for volume in volumes]
    if app.registries:
        spec["imagePullSecrets"] = [
            {"name": data_object_name(app.name, ResourceKind.REGISTRY, ref.name)}
            for ref in app.registries
        ]
    return {
        "metadata": {
            "labels": naming.app_labels(app.name, bundle.version, service=service.name),
            "annotations": {
                naming.VERSION: bundle.version,
                naming.CONFIG_HASH: content_hash(bundle, volumes),
            },
        },
        "spec": spec,
    }


def content_hash(bundle: AppBundle, volumes: list[Volume]) -> str:
    """A digest of the content of the configs, secrets and certificates ``volumes`` pin."""
    content: list[Any] = []
    for volume in volumes:
        pinned = volume.pinned()
        if pinned is None:
            continue
        kind, ref = pinned
        content.append([kind.value, ref.name, pinned_content(bundle, kind, ref.name)])
    return naming.digest(json.dumps(content, sort_keys=True), 16)


def pinned_content(bundle: AppBundle, kind: ResourceKind, name: str) -> dict[str, str]:
    """The key/value content of a pinned config, secret or certificate of the bundle."""
    if kind is ResourceKind.CONFIG and name in bundle.configs:
        return dict(bundle.configs[name].data)
    if kind is ResourceKind.SECRET and name in bundle.secrets:
        return dict(bundle.secrets[name].data)
    if kind is ResourceKind.CERTIFICATE and name in bundle.certificates:
        certificate = bundle.certificates[name]
        return {"tls.crt": certificate.certificate, "tls.key": certificate.private_key}
    raise BackendError(
        f"app {bundle.name!r} version {bundle.version!r} pins {kind.value} {name!r}, which "
        "its bundle lacks: fetch every resource the app references before applying it"
    )


def _container(bundle: AppBundle, service: Service) -> dict[str, Any]:
    env = dict(service.env)
    image = service.image
    if bundle.app.type is AppType.FUNCTION:
        image = image or DEFAULT_FUNCTION_IMAGE
        env.setdefault(HANDLER_ENV, service.handler or "")
    if not image:
        raise BackendError(
            f"service {service.name!r} of app {bundle.name!r} has no image: the kube backend "
            "runs containers, so give the service an image (or run the app on a native node)"
        )
    container: dict[str, Any] = {"name": service.name, "image": image}
    if service.command:
        container["command"] = list(service.command)
    if service.args:
        container["args"] = list(service.args)
    if env:
        container["env"] = [{"name": key, "value": value} for key, value in env.items()]
    if service.ports:
        container["ports"] = [_container_port(port) for port in service.ports]
    resources = {
        field: dict(quantities)
        for field, quantities in (
            ("limits", service.resources.limits), ("requests", service.resources.requests)
        )
        if quantities
    }
    if resources:
        container["resources"] = resources
    if service.volume_mounts:
        container["volumeMounts"] = [_mount(mount) for mount in service.volume_mounts]
    return container


def _mount(mount: VolumeMount) -> dict[str, Any]:
    body: dict[str, Any] = {"name": mount.name, "mountPath": mount.mount_path}
    if mount.read_only:
        body["readOnly"] = True
    return body


def _container_port(port: Port) -> dict[str, Any]:
    body: dict[str, Any] = {"containerPort": port.container_port, "protocol": port.protocol}
    name = port.name or ""
    if len(name) <= 15 and _PORT_NAME.fullmatch(name) and re.search("[a-z]", name):
        body["name"] = name  # other names still name the Service port
    if port.host_port is not None:
        body["hostPort"] = port.host_port
    return body


def _volume(app: str, volume: Volume) -> dict[str, Any]:
    pinned = volume.pinned()
    if pinned is not None:
        kind, ref = pinned
        source = data_object_name(app, kind, ref.name)
        if kind is ResourceKind.CONFIG:
            return {"name": volume.name, "configMap": {"name": source}}
        return {"name": volume.name, "secret": {"secretName": source}}
    if volume.host_path is not None:
        return {"name": volume.name, "hostPath": {"path": volume.host_path.path}}
    return {"name": volume.name, "emptyDir": {}}
