"""Node client certificates (``cloud_api.security.pki``): the issued and the revoked ones.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0003"
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('node_certificates',
    sa.Column('serial', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('namespace', sqlmodel.sql.sqltypes.AutoString(length=63), nullable=False),
    sa.Column('node', sqlmodel.sql.sqltypes.AutoString(length=63), nullable=False),
    sa.Column('issued_at', sa.Integer(), nullable=False),
    sa.Column('not_after', sa.Integer(), nullable=False),
    sa.Column('revoked_at', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('serial')
    )
    op.create_index(op.f('ix_node_certificates_namespace'), 'node_certificates', ['namespace'], unique=False)
    op.create_index(op.f('ix_node_certificates_node'), 'node_certificates', ['node'], unique=False)
    op.create_index(op.f('ix_node_certificates_revoked_at'), 'node_certificates', ['revoked_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_node_certificates_revoked_at'), table_name='node_certificates')
    op.drop_index(op.f('ix_node_certificates_node'), table_name='node_certificates')
    op.drop_index(op.f('ix_node_certificates_namespace'), table_name='node_certificates')
    op.drop_table('node_certificates')
