"""The one interface every backend implements (DESIGN §8): apply, remove, observe.

The engine plans with pure functions and hands a backend complete bundles: an app
version together with every config, secret, certificate and registry it pins, already
fetched and cached. A backend never talks to the cloud; it only makes the machine match
the bundles it is given and says what runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from schemas.resources import App, AppStatus, Certificate, Config, Registry, Secret


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
