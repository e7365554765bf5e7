"""Migrations: a database of the first release keeps its data through ``upgrade head``,
and the migrated schema is exactly what the models declare (on SQLite and PostgreSQL)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlmodel import SQLModel

from cloud_api.settings import sqlalchemy_url
from cloud_api.store import migrations
from cloud_api.store.engine import Store


def test_upgrading_a_first_release_database_keeps_its_data(store_url: str) -> None:
    store = Store(sqlalchemy_url(store_url))
    try:
        with store.engine.begin() as connection:
            migrations.upgrade(connection, "0001")
            assert "resources" not in inspect(connection).get_table_names()
            connection.execute(text("INSERT INTO namespaces (name, created_at) VALUES ('a', 1)"))
            connection.execute(text(
                "INSERT INTO nodes (namespace, name, labels, description, mode, created_at, online)"
                " VALUES ('a', 'n1', '{\"env\": \"prod\"}', 'd', 'native', 1, false)"))
            connection.execute(text(
                "INSERT INTO shadows (namespace, node, desired, reported, metadata, version,"
                " timestamp) VALUES ('a', 'n1', '{\"fan\": 1}', '{}', '{}', 7, 9)"))
        store.create_schema()  # -> head
        store.create_schema()  # idempotent
        with store.engine.connect() as connection:
            assert MigrationContext.configure(connection).get_current_revision() == "0008"
            labels, = connection.execute(text("SELECT labels FROM nodes")).one()
            shadow = connection.execute(text("SELECT desired, version FROM shadows")).one()
            assert "prod" in str(labels) and "fan" in str(shadow[0]) and shadow[1] == 7
            assert {"resources", "resource_versions"} <= set(inspect(connection).get_table_names())
    finally:
        store.close()


def test_a_database_made_before_migrations_is_stamped_then_upgraded(store_url: str) -> None:
    store = Store(sqlalchemy_url(store_url))
    try:
        with store.engine.begin() as connection:  # what create_all made before alembic
            migrations.upgrade(connection, "0001")
            connection.execute(text("DROP TABLE alembic_version"))
            connection.execute(text("INSERT INTO namespaces (name, created_at) VALUES ('a', 1)"))
        store.create_schema()
        with store.engine.connect() as connection:
            assert connection.execute(text("SELECT name FROM namespaces")).scalar() == "a"
    finally:
        store.close()


def test_the_migrated_schema_is_the_models(store_url: str) -> None:
    store = Store(sqlalchemy_url(store_url))
    try:
        store.create_schema()
        with store.engine.connect() as connection:
            context = MigrationContext.configure(connection)
            assert compare_metadata(context, SQLModel.metadata) == []
    finally:
        store.close()
