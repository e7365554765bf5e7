"""Events (``cloud_api.store.models.events``): app crashes, restarts, back-off, starts.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _text(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", _text(64), nullable=False),
        sa.Column("namespace", _text(63), nullable=False),
        sa.Column("node", _text(63), nullable=False),
        sa.Column("app", _text(63), nullable=False),
        sa.Column("service", _text(63), nullable=False),
        sa.Column("kind", _text(32), nullable=False),
        sa.Column("message", _text(1024), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("first_time", sa.Integer(), nullable=False),
        sa.Column("last_time", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    op.create_index("ix_events_namespace_last", "events", ["namespace", "last_time", "id"])
    op.create_index("ix_events_node_last", "events", ["namespace", "node", "last_time"])


def downgrade() -> None:
    op.drop_index("ix_events_node_last", table_name="events")
    op.drop_index("ix_events_namespace_last", table_name="events")
    op.drop_table("events")
