"""The resources a node runs, as the cloud serves them on ``resources/get`` (DESIGN §7, §8).

An app names its services (an image for Kubernetes, or a command for a local process),
the volumes they mount and the registries their images come from. Volumes pin the
exact ``{name, version}`` of each config, secret or certificate, so an app version
fully determines what a node runs; versions are opaque strings that change only when
content changes.

These models are the contract between the cloud's resource store and the edge's engine
and backends: the cloud validates against them, the edge parses what it fetches with them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from schemas.errors import Rejection
from schemas.names import validate_name


def _name(value: str) -> str:
    try:
        return validate_name(value)
    except Rejection as exc:  # pydantic reports ValueErrors as validation errors
        raise ValueError(exc.message) from None


Name = Annotated[str, Field(min_length=1, max_length=63), AfterValidator(_name)]
EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=255)]
Version = Annotated[str, Field(min_length=1, max_length=64)]


class ResourceKind(StrEnum):
    APP = "app"
    CONFIG = "config"
    SECRET = "secret"
    CERTIFICATE = "certificate"
    REGISTRY = "registry"


class AppType(StrEnum):
    CONTAINER = "container"
    FUNCTION = "function"


class AppStatus(StrEnum):
    """What ``reported.appstats.{app}.status`` holds (DESIGN §5)."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    UNKNOWN = "Unknown"


class Model(BaseModel):
    """camelCase on the wire (like Kubernetes manifests), snake_case in Python; strict keys."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)

    def wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class Ref(Model):
    """A pinned reference: this exact version of a named resource."""

    name: Name
    version: Version


class Port(Model):
    container_port: int = Field(ge=1, le=65535)
    name: Name | None = None
    protocol: Literal["TCP", "UDP"] = "TCP"
    service_port: int | None = Field(default=None, ge=1, le=65535)  # default: container_port
    host_port: int | None = Field(default=None, ge=1, le=65535)


class Resources(Model):
    """Kubernetes quantities, e.g. ``{"cpu": "250m", "memory": "64Mi"}``."""

    limits: dict[Literal["cpu", "memory"], str] = Field(default_factory=dict)
    requests: dict[Literal["cpu", "memory"], str] = Field(default_factory=dict)


class VolumeMount(Model):
    name: Name
    mount_path: str = Field(min_length=1, max_length=4096)
    read_only: bool = False


class HostPath(Model):
    path: str = Field(min_length=1, max_length=4096)


class EmptyDir(Model):
    pass


class Volume(Model):
    """Exactly one source: a pinned config, secret or certificate, a host path, or emptyDir."""

    name: Name
    config: Ref | None = None
    secret: Ref | None = None
    certificate: Ref | None = None
    host_path: HostPath | None = None
    empty_dir: EmptyDir | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Volume:
        sources = [s for s in ("config", "secret", "certificate", "host_path", "empty_dir") if getattr(self, s) is not None]
        if len(sources) != 1:
            raise ValueError(f"volume {self.name!r} needs exactly one of config, secret, certificate, hostPath, emptyDir")
        return self

    def pinned(self) -> tuple[ResourceKind, Ref] | None:
        for kind in (ResourceKind.CONFIG, ResourceKind.SECRET, ResourceKind.CERTIFICATE):
            ref = getattr(self, kind.value)
            if ref is not None:
                return kind, ref
        return None


class Service(Model):
    """One workload of an app: a container (``image``) or a local process (``command``).

    For function apps, ``handler`` is ``module.function`` in the code mounted from a config.
    """

    name: Name
    image: str | None = Field(default=None, max_length=1024)
    command: list[str] = Field(default_factory=list)
    args: list[str] = Field(default_factory=list)
    env: dict[EnvName, str] = Field(default_factory=dict)
    ports: list[Port] = Field(default_factory=list)
    resources: Resources = Field(default_factory=Resources)
    volume_mounts: list[VolumeMount] = Field(default_factory=list)
    replicas: int = Field(default=1, ge=0, le=1000)
    workload: Literal["deployment", "daemonset"] = "deployment"
    handler: str | None = Field(default=None, pattern=r"^[A-Za-z_][\w.]*\.[A-Za-z_]\w*$")


Amount = Annotated[int | str, Field(union_mode="left_to_right")]
"""A number of nodes (``3``) or a share of the nodes a rollout targets (``"25%"``)."""


def _amount(value: int | str) -> int | str:
    if isinstance(value, int):
        if value < 0:
            raise ValueError("must be a count >= 0 or a percentage like '25%'")
        return value
    text = value.strip()
    if text.isdigit():
        return int(text)
    if text.endswith("%") and text[:-1].isdigit() and 0 <= int(text[:-1]) <= 100:
        return text
    raise ValueError(f"{value!r} is neither a count nor a percentage like '25%'")


CheckedAmount = Annotated[Amount, AfterValidator(_amount)]


class OnFailure(StrEnum):
    PAUSE = "pause"
    ROLLBACK = "rollback"


class RolloutStrategy(Model):
    """``spec.rollout``: how a new version of the app reaches its nodes, in waves.

    ``waves`` gives the size of each wave, a count or a percentage of the nodes the app is
    matched to; the nodes left after the last listed wave make one final wave. Nodes are
    ordered by the value of the label ``orderBy`` (nodes without it last), then by name,
    so ``orderBy: canary`` with ``canary=a`` on a few nodes sends them first. A wave is
    healthy when each of its nodes reports the new version ``Running`` for
    ``minReadySeconds`` without a restart; a node that reports it ``Failed``, restarts it,
    or does not run it within ``progressDeadlineSeconds`` is a failure. Past
    ``maxFailures`` the rollout pauses or rolls back (``onFailure``). A node offline for
    ``offlineTimeoutSeconds`` no longer holds its wave (it is reported ``timedOut``, and
    runs what it should when it returns). No ``rollout``: every node at once.
    """

    waves: list[CheckedAmount] = Field(min_length=1, max_length=100)
    order_by: str | None = Field(default=None, max_length=317)
    min_ready_seconds: int = Field(default=30, ge=0, le=86_400)
    max_failures: CheckedAmount = 0
    on_failure: OnFailure = OnFailure.ROLLBACK
    offline_timeout_seconds: int = Field(default=300, ge=1, le=604_800)
    progress_deadline_seconds: int = Field(default=600, ge=1, le=604_800)


class App(Model):
    name: Name
    type: AppType = AppType.CONTAINER
    selector: str = ""
    services: list[Service] = Field(min_length=1)
    volumes: list[Volume] = Field(default_factory=list)
    registries: list[Ref] = Field(default_factory=list)
    rollout: RolloutStrategy | None = None

    @model_validator(mode="after")
    def _consistent(self) -> App:
        names = [s.name for s in self.services]
        if len(set(names)) != len(names):
            raise ValueError("service names must be unique within an app")
        volumes = {v.name for v in self.volumes}
        if len(volumes) != len(self.volumes):
            raise ValueError("volume names must be unique within an app")
        for service in self.services:
            for mount in service.volume_mounts:
                if mount.name not in volumes:
                    raise ValueError(f"service {service.name!r} mounts undeclared volume {mount.name!r}")
            if self.type is AppType.FUNCTION and service.handler is None:
                raise ValueError(f"function service {service.name!r} needs a handler 'module.function'")
        return self

    def references(self) -> list[tuple[ResourceKind, Ref]]:
        """Every pinned resource this app needs, volumes then registries."""
        refs = [pinned for volume in self.volumes if (pinned := volume.pinned()) is not None]
        refs.extend((ResourceKind.REGISTRY, ref) for ref in self.registries)
        return refs


class Config(Model):
    """Key/value data (also function code): each key becomes a file when mounted."""

    name: Name
    data: dict[str, str] = Field(default_factory=dict)


class Secret(Model):
    """Like a config; encrypted at rest in the cloud, 0600 files on a native node."""

    name: Name
    data: dict[str, str] = Field(default_factory=dict)


class Certificate(Model):
    name: Name
    certificate: str  # PEM
    private_key: str  # PEM


class Registry(Model):
    name: Name
    address: str = Field(min_length=1, max_length=1024)
    username: str = ""
    password: str = ""


RESOURCE_MODELS: dict[ResourceKind, type[Model]] = {
    ResourceKind.APP: App,
    ResourceKind.CONFIG: Config,
    ResourceKind.SECRET: Secret,
    ResourceKind.CERTIFICATE: Certificate,
    ResourceKind.REGISTRY: Registry,
}


class ResourceItem(Model):
    """One entry of ``resources/get``: asked with no value, answered with one."""

    kind: ResourceKind
    name: Name
    version: Version
    value: dict[str, Any] | None = None

    def parsed(self) -> Model:
        """The value as its kind's model (raises pydantic.ValidationError if malformed)."""
        return RESOURCE_MODELS[self.kind].model_validate(self.value or {})
