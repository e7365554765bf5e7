"""A bcrypt hash of each node password, for brokers that check passwords themselves (NATS).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("node_credentials") as batch:
        batch.add_column(sa.Column(
            "broker_password_hash", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=True
        ))


def downgrade() -> None:
    with op.batch_alter_table("node_credentials") as batch:
        batch.drop_column("broker_password_hash")
