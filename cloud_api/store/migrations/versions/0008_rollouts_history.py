"""Rollouts and shadow history (``store.models.rollouts``, ``store.models.history``).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _name(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    op.create_table(
        "rollouts",
        sa.Column("namespace", _name(63), nullable=False),
        sa.Column("kind", _name(16), nullable=False),
        sa.Column("name", _name(63), nullable=False),
        sa.Column("target", _name(64), nullable=False),
        sa.Column("stable", _name(64), nullable=True),
        sa.Column("phase", _name(16), nullable=False),
        sa.Column("wave", sa.Integer(), nullable=False),
        sa.Column("acknowledged", sa.Integer(), nullable=False),
        sa.Column("strategy", sa.JSON(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("started_at", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("namespace", "kind", "name"),
    )
    op.create_index("ix_rollouts_phase", "rollouts", ["phase"])
    op.create_table(
        "rollout_nodes",
        sa.Column("namespace", _name(63), nullable=False),
        sa.Column("kind", _name(16), nullable=False),
        sa.Column("name", _name(63), nullable=False),
        sa.Column("node", _name(63), nullable=False),
        sa.Column("wave", sa.Integer(), nullable=False),
        sa.Column("admitted_at", sa.Integer(), nullable=False),
        sa.Column("outcome", _name(16), nullable=False),
        sa.Column("running_since", sa.Integer(), nullable=True),
        sa.Column("restarts", sa.Integer(), nullable=True),
        sa.Column("cause", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("namespace", "kind", "name", "node"),
    )
    op.create_table(
        "shadow_history",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True,
                  nullable=False),
        sa.Column("namespace", _name(63), nullable=False),
        sa.Column("node", _name(63), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("at", sa.Integer(), nullable=False),
        sa.Column("section", _name(16), nullable=False),
        sa.Column("writer", _name(160), nullable=False),
        sa.Column("change", sa.JSON(), nullable=False),
        sa.Column("apps", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_shadow_history_node", "shadow_history", ["namespace", "node", "id"])


def downgrade() -> None:
    op.drop_index("ix_shadow_history_node", table_name="shadow_history")
    op.drop_table("shadow_history")
    op.drop_table("rollout_nodes")
    op.drop_index("ix_rollouts_phase", table_name="rollouts")
    op.drop_table("rollouts")
