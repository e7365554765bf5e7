"""The stored form of a node's shadow document: one row per node, updated by compare-and-swap.

The row holds exactly what ``schemas.shadow.ShadowDocument`` holds (the delta is derived,
never stored). ``version`` is the column every update compares and swaps on, so several
cloud replicas can serve one document without a lock.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Column, ForeignKeyConstraint
from sqlmodel import Field, SQLModel

from schemas.shadow import ShadowDocument


def _empty_metadata() -> dict[str, Any]:
    return {"desired": {}, "reported": {}}


class Shadow(SQLModel, table=True):
    __tablename__ = "shadows"
    __table_args__ = (
        ForeignKeyConstraint(["namespace", "node"], ["nodes.namespace", "nodes.name"]),
    )

    namespace: str = Field(primary_key=True, max_length=63)
    node: str = Field(primary_key=True, max_length=63)
    desired: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    reported: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    # ``metadata`` is reserved by SQLAlchemy's declarative base: the attribute is ``meta``.
    meta: dict[str, Any] = Field(
        default_factory=_empty_metadata, sa_column=Column("metadata", JSON, nullable=False)
    )
    version: int = 0
    timestamp: int = 0

    def document(self) -> ShadowDocument:
        return ShadowDocument(
            desired=self.desired,
            reported=self.reported,
            metadata=self.meta,
            version=self.version,
            timestamp=self.timestamp,
        )
