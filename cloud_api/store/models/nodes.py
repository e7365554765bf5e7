"""Namespaces and nodes: what an operator creates before a node can activate.

A node's name and namespace are DNS-1123 labels (checked by the services with
``schemas.names.validate_name``, the one rule of DESIGN §3). Labels follow the Kubernetes
label syntax (``schemas.labels.check_label``), because app selectors match them with
that syntax.
Times are epoch seconds, as in shadow documents.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import ConfigDict, field_validator
from sqlalchemy import JSON, String
from sqlmodel import Field, SQLModel

from schemas.labels import check_labels

MAX_DESCRIPTION = 1024


def check_text(value: str) -> str:
    """Free text (descriptions) may hold anything but NUL, which PostgreSQL cannot store."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


class NodeMode(StrEnum):
    """How a node runs its workloads (DESIGN §8 backends)."""

    NATIVE = "native"
    KUBE = "kube"


# -- namespaces ------------------------------------------------------------------------
class NamespaceBase(SQLModel):
    name: str = Field(max_length=63)


class NamespaceCreate(NamespaceBase):
    model_config = ConfigDict(extra="forbid")  # type: ignore[assignment]


class Namespace(NamespaceBase, table=True):
    __tablename__ = "namespaces"

    name: str = Field(primary_key=True, max_length=63)
    created_at: int


class NamespacePublic(NamespaceBase):
    created_at: int = Field(serialization_alias="createdAt")


# -- nodes -----------------------------------------------------------------------------
class NodeBase(SQLModel):
    labels: dict[str, str] = Field(default_factory=dict, sa_type=JSON)
    description: str = Field(default="", max_length=MAX_DESCRIPTION)
    mode: NodeMode = Field(default=NodeMode.NATIVE, sa_type=String(16))


class NodeCreate(NodeBase):
    """``POST .../nodes``: ``{"name", "labels"?, "description"?, "mode"?}``."""

    model_config = ConfigDict(extra="forbid")  # type: ignore[assignment]

    name: str = Field(max_length=253)  # the DNS-1123 rule is the service's, with its message

    _check_description = field_validator("description")(check_text)

    _check_labels = field_validator("labels")(check_labels)


MAX_BULK_NODES = 1000


class NodeBulkCreate(SQLModel):
    """``POST .../nodes:bulk``: ``{"items": [NodeCreate, ...]}``, each item checked alone."""

    model_config = ConfigDict(extra="forbid")  # type: ignore[assignment]

    items: list[Any] = Field(min_length=1, max_length=MAX_BULK_NODES)


class NodeBulkItem(SQLModel):
    """What became of one item: ``created``, ``exists`` (left as it is) or ``failed``."""

    name: str
    status: str
    message: str | None = None


class NodeBulkResult(SQLModel):
    created: int
    existing: int
    failed: int
    items: list[NodeBulkItem]


class NodeUpdate(SQLModel):
    """``PATCH|PUT .../nodes/{node}``: ``{"labels"?, "description"?}``; what is sent replaces.

    Changing labels recomputes the node's desired apps.
    """

    model_config = ConfigDict(extra="forbid")  # type: ignore[assignment]

    labels: dict[str, str] | None = None
    description: str | None = Field(default=None, max_length=MAX_DESCRIPTION)

    @field_validator("description")
    @classmethod
    def _check_description(cls, value: str | None) -> str | None:
        return None if value is None else check_text(value)

    @field_validator("labels")
    @classmethod
    def _check_labels(cls, labels: dict[str, str] | None) -> dict[str, str] | None:
        return None if labels is None else check_labels(labels)


class Node(NodeBase, table=True):
    __tablename__ = "nodes"

    namespace: str = Field(primary_key=True, foreign_key="namespaces.name", max_length=63)
    name: str = Field(primary_key=True, max_length=63)
    created_at: int
    online: bool = False
    last_seen: int | None = None


class NodePublic(NodeBase):
    namespace: str
    name: str
    online: bool
    last_seen: int | None = Field(default=None, serialization_alias="lastSeen")
    created_at: int = Field(serialization_alias="createdAt")
