"""The audit trail: one row per write asked of the REST API (and so of the CLI).

Why it exists: an operator must be able to tell who changed what, when, and whether it
was refused. A write that is stored gets its row in the same transaction
(``cloud_api.services.auditing``), so a row with ``outcome = "done"`` exists if and only if
the write happened; a refused or failed write gets its row afterwards, with its status.
Shadow reports of nodes over MQTT are not audited: they are the nodes' own, and many.

Times are epoch seconds, as everywhere in the store; the API renders them as ISO 8601.
"""

from __future__ import annotations

from sqlalchemy import Index
from sqlmodel import Field, SQLModel


class AuditEntry(SQLModel, table=True):
    __tablename__ = "audit_entries"
    __table_args__ = (
        Index("ix_audit_entries_namespace_id", "namespace", "id"),
        Index("ix_audit_entries_time", "time"),
    )

    id: int | None = Field(default=None, primary_key=True)
    time: int
    token_id: int | None = None
    role: str | None = Field(default=None, max_length=16)
    method: str = Field(max_length=8)
    path: str = Field(max_length=512)
    action: str = Field(max_length=16)  # create, replace, update, delete, revoke
    kind: str = Field(max_length=32)  # node, app, ..., shadow, token, namespace
    namespace: str | None = Field(default=None, max_length=63)
    name: str | None = Field(default=None, max_length=253)
    before_version: str | None = Field(default=None, max_length=32)
    after_version: str | None = Field(default=None, max_length=32)
    status: int
    outcome: str = Field(max_length=16)  # done, refused (4xx), failed (5xx)
