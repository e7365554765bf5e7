"""Pending matches (``cloud_api.store.models.matching``): recomputes of desired apps still owed.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pending_matches",
        sa.Column("namespace", sqlmodel.sql.sqltypes.AutoString(length=63), nullable=False),
        sa.Column("node", sqlmodel.sql.sqltypes.AutoString(length=63), nullable=False),
        sa.Column("ticket", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("requested_at", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("namespace", "node"),
    )


def downgrade() -> None:
    op.drop_table("pending_matches")
