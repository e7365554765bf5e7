"""A node's recent shadow revisions, with who or what wrote each.

Why it is stored: "what did this node run at 14:02, and who changed it" is asked after the
fact. Each accepted update that changes ``desired``, or changes what the node runs
(``reported.apps``) or how (an app's status), leaves one row, written in the transaction
of the shadow swap itself (``store.shadow_history``). A heartbeat that only refreshes
usage leaves none. Rows are bounded per node by a background prune, not per write.

``writer`` says who: ``node`` (the node itself), ``rest:token/ID`` (a PATCH by an API
token), ``matching:APPS`` (matching after those apps changed), ``rollout:APP`` (a wave or
a rollback of that app). ``change`` is the applied patch (reported: apps and app statuses
only); ``apps`` the node's ``{"desired": {...}, "reported": {...}}`` apps after it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, Integer
from sqlmodel import Field, SQLModel


class ShadowRevision(SQLModel, table=True):
    __tablename__ = "shadow_history"
    __table_args__ = (Index("ix_shadow_history_node", "namespace", "node", "id"),)

    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True,
                         autoincrement=True),
    )
    namespace: str = Field(max_length=63)
    node: str = Field(max_length=63)
    version: int
    at: int
    section: str = Field(max_length=16)
    writer: str = Field(max_length=160)
    change: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    apps: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
