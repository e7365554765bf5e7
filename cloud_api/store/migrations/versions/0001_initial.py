"""The schema as first released: namespaces, nodes, shadows, API tokens, activation
tokens and node credentials.

Revision ID: 0001
Revises: None
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('api_tokens',
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('namespaces', sa.JSON(), nullable=False),
    sa.Column('description', sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('created_at', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_hash')
    )
    op.create_table('namespaces',
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=63), nullable=False),
    sa.Column('created_at', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('nodes',
    sa.Column('labels', sa.JSON(), nullable=False),
    sa.Column('description', sqlmodel.sql.sqltypes.AutoString(length=1024), nullable=False),
    sa.Column('mode', sa.String(length=16), nullable=False),
    sa.Column('namespace', sqlmodel.sql.sqltypes.AutoString(length=63), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=63), nullable=False),
    sa.Column('created_at', sa.Integer(), nullable=False),
    sa.Column('online', sa.Boolean(), nullable=False),
    sa.Column('last_seen', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['namespace'], ['namespaces.name'], ),
    sa.PrimaryKeyConstraint('namespace', 'name')
    )
    op.create_table('activation_tokens',
    sa.Column('token_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('namespace', sqlmodel.sql.sqltypes.AutoString(length=63), nullable=False),
    sa.Column('node', sqlmodel.sql.sqltypes.AutoString(length=63), nullable=False),
    sa.Column('mode', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.Integer(), nullable=False),
    sa.Column('expires_at', sa.Integer(), nullable=False),
    sa.Column('used_at', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['namespace', 'node'], ['nodes.namespace', 'nodes.name'], ),
    sa.PrimaryKeyConstraint('token_hash')
    )
    op.create_index(op.f('ix_activation_tokens_namespace'), 'activation_tokens', ['namespace'], unique=False)
    op.create_table('node_credentials',
    sa.Column('namespace', sqlmodel.sql.sqltypes.AutoString(length=63), nullable=False),
    sa.Column('node', sqlmodel.sql.sqltypes.AutoString(length=63), nullable=False),
    sa.Column('password_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('created_at', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['namespace', 'node'], ['nodes.namespace', 'nodes.name'], ),
    sa.PrimaryKeyConstraint('namespace', 'node')
    )
    op.create_table('shadows',
    sa.Column('namespace', sqlmodel.sql.sqltypes.AutoString(length=63), nullable=False),
    sa.Column('node', sqlmodel.sql.sqltypes.AutoString(length=63), nullable=False),
    sa.Column('desired', sa.JSON(), nullable=False),
    sa.Column('reported', sa.JSON(), nullable=False),
    sa.Column('metadata', sa.JSON(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('timestamp', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['namespace', 'node'], ['nodes.namespace', 'nodes.name'], ),
    sa.PrimaryKeyConstraint('namespace', 'node')
    )


def downgrade() -> None:
    op.drop_table('shadows')
    op.drop_table('node_credentials')
    op.drop_index(op.f('ix_activation_tokens_namespace'), table_name='activation_tokens')
    op.drop_table('activation_tokens')
    op.drop_table('nodes')
    op.drop_table('namespaces')
    op.drop_table('api_tokens')
