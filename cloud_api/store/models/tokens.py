"""API tokens: the bearer tokens of the REST API, stored as SHA-256 hashes only.

A token has a role (admin: everything; editor: read and write in its namespaces; viewer:
read only in its namespaces) and, unless it is an admin token, the namespaces it sees.
The plaintext is returned once, when the token is created (``ApiTokenIssued``); listing
and describing show the rest (``ApiTokenPublic``), never the secret or its hash. A revoked
token keeps its row (``revoked_at``), so the audit trail still names it.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import ConfigDict, field_validator
from sqlalchemy import JSON, String
from sqlmodel import Field, SQLModel

from cloud_api.store.models.nodes import check_text
from schemas.errors import Rejection
from schemas.names import validate_name


class Role(StrEnum):
    ADMIN = "admin"
    EDITOR = "editor"
    VIEWER = "viewer"


class ApiTokenBase(SQLModel):
    role: Role = Field(sa_type=String(16))
    namespaces: list[str] = Field(default_factory=list, sa_type=JSON)
    description: str = Field(default="", max_length=256)


class ApiTokenCreate(ApiTokenBase):
    """``POST /v1/tokens``: ``{"role", "namespaces"?, "description"?}``."""

    model_config = ConfigDict(extra="forbid")  # type: ignore[assignment]

    _check_description = field_validator("description")(check_text)

    @field_validator("namespaces")
    @classmethod
    def _check_namespaces(cls, namespaces: list[str]) -> list[str]:
        for name in namespaces:
            try:
                validate_name(name, kind="namespace")
            except Rejection as exc:
                raise ValueError(exc.message) from exc
        return sorted(set(namespaces))


class ApiToken(ApiTokenBase, table=True):
    __tablename__ = "api_tokens"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(unique=True, max_length=64)
    created_at: int
    revoked_at: int | None = None

    def sees(self, namespace: str) -> bool:
        return self.role == Role.ADMIN or namespace in self.namespaces


class ApiTokenPublic(ApiTokenBase):
    id: int
    role: str = Field(sa_type=String(16))  # type: ignore[assignment]  # as stored
    created_at: int = Field(serialization_alias="createdAt")
    revoked_at: int | None = Field(default=None, serialization_alias="revokedAt")


class ApiTokenIssued(ApiTokenPublic):
    token: str
