"""The one interface every backend implements (DESIGN §8): apply, remove, observe.

The engine plans with pure functions and hands a backend complete bundles: an app
version together with every config, secret, certificate and registry it pins, already
fetched and cached. A backend never talks to the cloud; it only makes the machine match
the bundles it is given and says what runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from edge_runtime.errors import BackendError
from schemas.resources import (
    App,
    AppStatus,
    Certificate,
    Config,
    Registry,
    Secret,
    Service,
    VolumeMount,
)


@dataclass(frozen=True)
class AppBundle:
    """Everything needed to run one version of one app."""

    app: App
    version: str
    configs: dict[str, Config] = field(default_factory=dict)
    secrets: dict[str, Secret] = field(default_factory=dict)
    certificates: dict[str, Certificate] = field(default_factory=dict)
    registries: dict[str, Registry] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.app.name


@dataclass(frozen=True)
class InstanceStatus:
    """One running unit of an app: a pod, or a local process."""

    name: str
    status: AppStatus
    cause: str = ""
    restarts: int = 0
    cpu_percent: float | None = None
    memory_bytes: int | None = None
    # for events only (not reported, not compared): its service, how its last run ended
    service: str = field(default="", compare=False)
    last_exit: str = field(default="", compare=False)  # e.g. "exit code 3"

    def wire(self) -> dict[str, Any]:
        body: dict[str, Any] = {"name": self.name, "status": self.status.value, "restarts": self.restarts}
        if self.cause:
            body["cause"] = self.cause
        if self.cpu_percent is not None:
            body["cpu"] = round(self.cpu_percent, 1)
        if self.memory_bytes is not None:
            body["memory"] = self.memory_bytes
        return body


@dataclass(frozen=True)
class ObservedApp:
    """What a backend sees of one app it manages: the version applied and how it runs."""

    name: str
    version: str
    status: AppStatus
    cause: str = ""
    instances: tuple[InstanceStatus, ...] = ()

    def wire(self) -> dict[str, Any]:
        """The ``reported.appstats.{app}`` entry."""
        body: dict[str, Any] = {"version": self.version, "status": self.status.value}
        if self.cause:
            body["cause"] = self.cause
        body["instances"] = [instance.wire() for instance in self.instances]
        return body


def function_code_mount(bundle: AppBundle, service: Service) -> VolumeMount:
    """The mount of ``service`` that holds its function code (both backends run it from there).

    The config mount whose config has ``{module}.py`` (``module`` being the handler's first
    part), else the service's first config mount. ``BackendError`` when it mounts no config.
    """
    module_file = (service.handler or "").split(".")[0] + ".py"
    configs = {volume.name: volume.config.name for volume in bundle.app.volumes if volume.config}
    mounts = [mount for mount in service.volume_mounts if mount.name in configs]
    for mount in mounts:
        config = bundle.configs.get(configs[mount.name])
        if config is not None and module_file in config.data:
            return mount
    if not mounts:
        raise BackendError(
            f"function service {service.name!r} of app {bundle.name!r} mounts no config: "
            f"mount the config holding {module_file} (its handler {service.handler!r})"
        )
    return mounts[0]


class Backend(Protocol):
    """Makes the machine run what it is given; every method may raise ``BackendError``."""

    name: str  # "native" or "kube", reported in reported.node.backend

    def apply(self, bundle: AppBundle) -> None:
        """Create or update the app to exactly this bundle (idempotent)."""

    def remove(self, app: str) -> None:
        """Stop and delete everything of ``app`` (idempotent: unknown apps are fine)."""

    def observe(self) -> dict[str, ObservedApp]:
        """Every app this backend manages, with the version applied and its status."""

    def node_facts(self) -> dict[str, Any]:
        """Facts for ``reported.node`` (e.g. ``kubernetesVersion``); may be empty."""

    def close(self) -> None:
        """Release resources; running apps keep running (they survive an agent restart)."""
