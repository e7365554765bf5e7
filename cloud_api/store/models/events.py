"""App events the nodes publish (crashes, restarts, back-off, starts), deduplicated.

Why a table of its own: events are what an operator reads first when an app misbehaves,
after its node has restarted or its output has rotated away. One row per distinct
``(namespace, node, app, service, kind, message)``, found by ``key`` (a hash of those, so
the unique index stays small whatever the message): a repeat raises ``count`` and moves
``last_time``, as Kubernetes events do. Rows are listed newest first by ``(last_time, id)``.
"""

from __future__ import annotations

from sqlmodel import Field, Index, SQLModel


class Event(SQLModel, table=True):
    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_namespace_last", "namespace", "last_time", "id"),
        Index("ix_events_node_last", "namespace", "node", "last_time"),
    )

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=64, unique=True)
    namespace: str = Field(max_length=63)
    node: str = Field(max_length=63)
    app: str = Field(max_length=63)
    service: str = Field(max_length=63)
    kind: str = Field(max_length=32)
    message: str = Field(max_length=1024)
    count: int = 1
    first_time: int
    last_time: int
