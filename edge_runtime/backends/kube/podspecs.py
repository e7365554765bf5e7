"""The pod template of one service: its container, volumes, pull secrets and labels.

Split from ``rendering`` because the pod template is where most of an app model's fields
land (image, command, env, ports, resources, mounts) and where the two rules that keep
rollouts right live: the template carries the version (so a new version rolls the pods)
and a hash of the content it mounts (so a changed config or secret rolls them too, even
though Kubernetes would only update mounted files in place).

A function service that names no command runs Tether's own function runtime
(``edge_runtime.functions.runtime``) in the Tether image (``FunctionRuntime.image``):
``--code-dir`` is where the config holding the handler's module is mounted, the server
listens on ``FunctionRuntime.port`` (container port ``function``) and a readiness probe
on ``/healthz`` keeps a pod out of its Service until the handler is loaded.

Pure: models in, plain dicts out.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from edge_runtime.backends.base import AppBundle, function_code_mount
from edge_runtime.backends.kube import naming
from edge_runtime.errors import BackendError
from edge_runtime.functions.directory import APP_ENV, HANDLER_ENV, NAME_ENV
from edge_runtime.settings import DEFAULT_FUNCTION_IMAGE, DEFAULT_FUNCTION_PORT
from schemas.resources import AppType, Port, ResourceKind, Service, Volume, VolumeMount

FUNCTION_PORT_NAME = "function"
HEALTH_PATH = "/healthz"


@dataclass(frozen=True)
class FunctionRuntime:
    """How function services without a command run: which image, on which port."""

    image: str = DEFAULT_FUNCTION_IMAGE
    port: int = DEFAULT_FUNCTION_PORT

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ValueError(f"function port {self.port} is not a TCP port (1-65535)")


DEFAULT_FUNCTION_RUNTIME = FunctionRuntime()  # the default of every ``functions`` argument


def runs_function_runtime(bundle: AppBundle, service: Service) -> bool:
    """Whether ``service`` runs Tether's function runtime (a function with no command)."""
    return bundle.app.type is AppType.FUNCTION and bool(service.handler) and not service.command

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


def pod_template(
    bundle: AppBundle, service: Service, functions: FunctionRuntime = DEFAULT_FUNCTION_RUNTIME
) -> dict[str, Any]:
    """``spec.template`` of the service's Deployment or DaemonSet."""
    app = bundle.app
    mounted = {mount.name for mount in service.volume_mounts}
    volumes = [volume for volume in app.volumes if volume.name in mounted]
    if runs_function_runtime(bundle, service):
        container = _function_container(bundle, service, functions)
    else:
        container = _container(bundle, service, service.image)
    spec: dict[str, Any] = {"containers": [container]}
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


def _function_container(
    bundle: AppBundle, service: Service, functions: FunctionRuntime
) -> dict[str, Any]:
    """A container running the function runtime: command, port and readiness probe."""
    container = _container(bundle, service, service.image or functions.image)
    code = function_code_mount(bundle, service)
    if any(port.container_port == functions.port for port in service.ports):
        raise BackendError(
            f"function service {service.name!r} of app {bundle.name!r} declares port "
            f"{functions.port}, which the function runtime listens on: drop it or use another"
        )
    ports = [{"name": FUNCTION_PORT_NAME, "containerPort": functions.port, "protocol": "TCP"}]
    return {
        **container,
        "command": [
            "python", "-m", "edge_runtime.functions.runtime",
            "--code-dir", container_path(code.mount_path),
            "--handler", service.handler,
            "--host", "0.0.0.0",
            "--port", str(functions.port),
        ],
        "ports": ports + container.get("ports", []),
        "readinessProbe": {
            "httpGet": {"path": HEALTH_PATH, "port": FUNCTION_PORT_NAME},
            "periodSeconds": 2,
            "failureThreshold": 3,
        },
    }  # fmt: skip


def _container(bundle: AppBundle, service: Service, image: str | None) -> dict[str, Any]:
    env = dict(service.env)
    if bundle.app.type is AppType.FUNCTION:
        env.setdefault(HANDLER_ENV, service.handler or "")
        env.setdefault(APP_ENV, bundle.name)
        env.setdefault(NAME_ENV, service.name)
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


def container_path(mount_path: str) -> str:
    """A mount path inside a container: a relative one (native nodes take those from the
    service's working dir) is taken from the container's root."""
    return mount_path if mount_path.startswith("/") else "/" + mount_path


def _mount(mount: VolumeMount) -> dict[str, Any]:
    body: dict[str, Any] = {"name": mount.name, "mountPath": container_path(mount.mount_path)}
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
