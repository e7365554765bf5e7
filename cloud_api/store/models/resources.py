"""Apps, configs, secrets, certificates and registries: the resources nodes run (DESIGN §7).

Every kind is stored the same way, so one service handles them all:

- ``Resource``: one row per (namespace, kind, name): the current ``version`` (a counter,
  served as a string), the keyed hash of its content, an app's ``selector``, and the
  operator's ``description`` and ``labels``.
- ``ResourceVersion``: one immutable row per version ever served, so a node can fetch an
  exact (kind, name, version) later. ``spec`` is the public view (all of an app or a
  config; a secret's key names; a registry without its password; a certificate without
  its key); ``sealed`` the full wire form encrypted (secrets, registries, certificates).

REST bodies are the ``schemas.resources`` model fields (camelCase) plus ``description`` and
``labels``; an app's volumes and registries may leave out ``version``, and the cloud pins
the referent's current one. Responses add ``namespace``, ``version``, ``createdAt`` and
``updatedAt``.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field as PydanticField
from pydantic import field_validator, model_validator
from sqlalchemy import JSON, Text
from sqlmodel import Field, SQLModel

from schemas.labels import SelectorError, check_labels, parse_selector
from schemas.resources import App, Config, Model, Name, Registry, Secret, Version, Volume

MAX_PEM = 65_536


# -- tables ----------------------------------------------------------------------------
class Resource(SQLModel, table=True):
    __tablename__ = "resources"

    namespace: str = Field(primary_key=True, foreign_key="namespaces.name", max_length=63)
    kind: str = Field(primary_key=True, max_length=16)
    name: str = Field(primary_key=True, max_length=63)
    version: int
    content_hash: str = Field(max_length=64)
    selector: str = Field(default="", sa_type=Text)
    description: str = Field(default="", max_length=1024)
    labels: dict[str, str] = Field(default_factory=dict, sa_type=JSON)
    created_at: int
    updated_at: int


class ResourceVersion(SQLModel, table=True):
    __tablename__ = "resource_versions"

    namespace: str = Field(primary_key=True, max_length=63)
    kind: str = Field(primary_key=True, max_length=16)
    name: str = Field(primary_key=True, max_length=63)
    version: int = Field(primary_key=True)
    spec: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    sealed: str | None = Field(default=None, sa_type=Text)
    created_at: int


# -- bodies ----------------------------------------------------------------------------
class ResourceMeta(Model):
    description: str = PydanticField(default="", max_length=1024)
    labels: dict[str, str] = PydanticField(default_factory=dict)

    @field_validator("description")
    @classmethod
    def _check_description(cls, value: str) -> str:
        if "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value

    _check_labels = field_validator("labels")(check_labels)


class RefIn(Model):
    """A reference in a request: without ``version``, the referent's current one is pinned."""

    name: Name
    version: Version | None = None


class VolumeIn(Volume):
    config: RefIn | None = None  # type: ignore[assignment]
    secret: RefIn | None = None  # type: ignore[assignment]
    certificate: RefIn | None = None  # type: ignore[assignment]


class AppCreate(App, ResourceMeta):
    """``POST|PUT .../apps``: an app whose references may be left unpinned."""

    volumes: list[VolumeIn] = PydanticField(default_factory=list)  # type: ignore[assignment]
    registries: list[RefIn] = PydanticField(default_factory=list)  # type: ignore[assignment]

    @field_validator("selector")
    @classmethod
    def _check_selector(cls, value: str) -> str:
        try:
            parse_selector(value)
        except SelectorError as exc:
            raise ValueError(exc.message) from None
        return value


class ConfigCreate(Config, ResourceMeta):
    """``POST|PUT .../configs``."""


class SecretCreate(Secret, ResourceMeta):
    """``POST|PUT .../secrets``: the values are sealed at rest and never returned."""


class RegistryCreate(Registry, ResourceMeta):
    """``POST|PUT .../registries``: the password is sealed like a secret."""


class CertificateGenerate(Model):
    common_name: str = PydanticField(min_length=1, max_length=64)
    sans: list[str] = PydanticField(default_factory=list, max_length=100)
    days: int = PydanticField(default=365, ge=1, le=825)
    self_signed: bool = True


class CertificateCreate(ResourceMeta):
    """``POST|PUT .../certificates``: PEM ``certificate`` + ``privateKey``, or ``generate``."""

    name: Name
    certificate: str | None = PydanticField(default=None, max_length=MAX_PEM)
    private_key: str | None = PydanticField(default=None, max_length=MAX_PEM)
    generate: CertificateGenerate | None = None

    @model_validator(mode="after")
    def _one_source(self) -> CertificateCreate:
        given = self.certificate is not None or self.private_key is not None
        if given == (self.generate is not None):
            raise ValueError("send either 'certificate' and 'privateKey' (PEM) or 'generate'")
        if given and (self.certificate is None or self.private_key is None):
            raise ValueError("'certificate' and 'privateKey' go together")
        return self


# -- responses -------------------------------------------------------------------------
class ResourceStatus(Model):
    namespace: str
    version: str
    created_at: int
    updated_at: int
    description: str = ""
    labels: dict[str, str] = PydanticField(default_factory=dict)
    # on a write that changes what nodes run: how many nodes' desired apps differ from what
    # matches them now, i.e. the updates the matching it owes will make
    affected_nodes: int | None = None


class AppPublic(App, ResourceStatus):
    pass


class ConfigPublic(Config, ResourceStatus):
    pass


class SecretPublic(ResourceStatus):
    name: str
    keys: list[str]


class RegistryPublic(ResourceStatus):
    name: str
    address: str
    username: str = ""


class CertificatePublic(ResourceStatus):
    name: str
    certificate: str
    subject: str
    common_name: str | None = None
    issuer: str
    sans: list[str] = PydanticField(default_factory=list)
    serial: str
    not_before: int
    not_after: int


class AppNodeStatus(Model):
    """One row of ``GET .../apps/{name}/nodes``."""

    node: str
    desired_version: str
    reported_version: str | None = None
    status: str | None = None
    online: bool
    cause: str | None = None
    restarts: int = 0


class AppRolloutCounts(Model):
    matched: int
    updated: int
    running: int
    failed: int
    offline: int


class AppRollout(Model):
    app: str
    version: str
    counts: AppRolloutCounts
    nodes: list[AppNodeStatus]
