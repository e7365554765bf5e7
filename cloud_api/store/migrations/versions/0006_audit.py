"""The audit trail (``cloud_api.store.models.audit``) and revocable API tokens.

Revision ID: 0006
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    text = sqlmodel.sql.sqltypes.AutoString
    op.create_table(
        "audit_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("time", sa.Integer(), nullable=False),
        sa.Column("token_id", sa.Integer(), nullable=True),
        sa.Column("role", text(length=16), nullable=True),
        sa.Column("method", text(length=8), nullable=False),
        sa.Column("path", text(length=512), nullable=False),
        sa.Column("action", text(length=16), nullable=False),
        sa.Column("kind", text(length=32), nullable=False),
        sa.Column("namespace", text(length=63), nullable=True),
        sa.Column("name", text(length=253), nullable=True),
        sa.Column("before_version", text(length=32), nullable=True),
        sa.Column("after_version", text(length=32), nullable=True),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("outcome", text(length=16), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_entries_namespace_id", "audit_entries", ["namespace", "id"])
    op.create_index("ix_audit_entries_time", "audit_entries", ["time"])
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("revoked_at", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("revoked_at")
    op.drop_index("ix_audit_entries_time", table_name="audit_entries")
    op.drop_index("ix_audit_entries_namespace_id", table_name="audit_entries")
    op.drop_table("audit_entries")
