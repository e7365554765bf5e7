"""Alembic's entry point: migrate on the connection ``cloud_api.store.migrations`` hands in."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import cloud_api.store.models  # noqa: F401  (registers every table on SQLModel.metadata)

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through cloud_api.store.migrations.upgrade(connection)")
context.configure(connection=connection, target_metadata=SQLModel.metadata)
with context.begin_transaction():
    context.run_migrations()
