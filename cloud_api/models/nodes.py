"""Namespaces and nodes: what an operator creates before a node can activate.

A node's name and namespace are DNS-1123 labels (checked by the services with
``schemas.names.validate_name``, the one rule of DESIGN §3). Labels follow the Kubernetes
label syntax, checked here, because app selectors will match them with that syntax.
Times are epoch seconds, as in shadow documents.
"""

from __future__ import annotations

import re
from enum import StrEnum

from pydantic import ConfigDict, field_validator
from sqlalchemy import JSON, String
from sqlmodel import Field, SQLModel

MAX_LABELS = 64
MAX_DESCRIPTION = 1024
_LABEL_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def check_label(key: str, value: str) -> None:
    """Raise ValueError unless ``key: value`` is a valid Kubernetes label."""
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix)):
        raise ValueError(f"label key {key[:80]!r}: the prefix must be a DNS subdomain")
    if not _LABEL_NAME.fullmatch(name):
        raise ValueError(
            f"label key {key[:80]!r}: use at most 63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit (optionally after 'prefix/')"
        )
    if value and not _LABEL_NAME.fullmatch(value):
        raise ValueError(
            f"label value {value[:80]!r} of {key[:80]!r}: empty, or at most 63 letters, digits, "
            "'-', '_' or '.', starting and ending with a letter or digit"
        )


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
    __tablename__ = "namespaces"  # type: ignore[assignment]

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

    @field_validator("labels")
    @classmethod
    def _check_labels(cls, labels: dict[str, str]) -> dict[str, str]:
        if len(labels) > MAX_LABELS:
            raise ValueError(f"at most {MAX_LABELS} labels")
        for key, value in labels.items():
            check_label(key, value)
        return labels


class Node(NodeBase, table=True):
    __tablename__ = "nodes"  # type: ignore[assignment]

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
