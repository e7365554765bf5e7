"""The database schema's history (alembic), shipped inside the package.

``Store.create_schema()`` runs ``upgrade(connection)``: every revision not yet applied, in
the caller's transaction (so the PostgreSQL advisory lock it holds covers them). A
database made before migrations existed (tables, no ``alembic_version``) is stamped at
revision ``0001`` first, the schema it was created with, and then upgraded. A model change
needs a new revision here; ``tests/cloud_api/test_migrations.py`` fails until the
migrated schema equals the models again.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, inspect

FIRST_REVISION = "0001"


@cache
def config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent))
    return cfg


def _configured(connection: Connection) -> Config:
    cfg = config()
    cfg.attributes["connection"] = connection
    return cfg


def upgrade(connection: Connection, revision: str = "head") -> None:
    """Bring the schema on ``connection`` to ``revision`` (inside its transaction)."""
    tables = set(inspect(connection).get_table_names())
    if "alembic_version" not in tables and "nodes" in tables:
        command.stamp(_configured(connection), FIRST_REVISION)
    command.upgrade(_configured(connection), revision)
