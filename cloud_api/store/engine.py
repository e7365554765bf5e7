"""The store's engine: one SQLAlchemy engine over SQLite (embedded default) or PostgreSQL (scale-out).

Every write must survive a power cut once it is acknowledged: SQLite runs in WAL mode with
``synchronous=FULL`` (each commit fsyncs the log); PostgreSQL's defaults already fsync on
commit. Several cloud replicas may share one PostgreSQL, so nothing here assumes a single
writer: migrations (alembic, ``cloud_api/migrations``) run under an advisory lock, and shadow updates are compare-and-swaps
(``services/shadows.py``).

Database errors leave ``Store.session()`` as ``StoreUnavailable`` (the database did not
answer: retry) or ``StoreError``; services catch the ones they expect (a duplicate name is
an ``IntegrityError``) before that.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, Table, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlmodel import Session, SQLModel, create_engine

import cloud_api.store.models  # noqa: F401  (registers every table on SQLModel.metadata)
from cloud_api.errors import CloudError, StoreError, StoreUnavailable
from cloud_api.store import migrations
from schemas.payloads import encode_json

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 30_000
# Any constant; replicas starting together serialise their migrations on it.
_SCHEMA_LOCK_ID = 0x7E7E_0001


# 19 digits or more: an integer that may not fit 64 bits, which orjson would turn into a float
_LONG_NUMBER = re.compile(r"\d{19}")


def encode_stored_json(value: Any) -> str:
    """A JSON column's text: compact, as every message is (``schemas.payloads.encode_json``)."""
    return encode_json(value).decode("utf-8")


def decode_stored_json(text: str | bytes) -> Any:
    """A JSON column's value. orjson, several times faster than the standard library, reads
    integers beyond 64 bits as floats and loses their digits; a text holding a number that
    long (rare) is read by the standard library instead, which keeps them."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    if _LONG_NUMBER.search(text):
        return json.loads(text)
    return orjson.loads(text)


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def create_store_engine(url: str) -> Engine:
    """An engine for ``url`` (already in SQLAlchemy form, see ``settings.sqlalchemy_url``)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            json_serializer=encode_stored_json,
            json_deserializer=decode_stored_json,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        )
        event.listen(engine, "connect", _configure_sqlite)
        return engine
    return create_engine(
        url, json_serializer=encode_stored_json, json_deserializer=decode_stored_json,
        pool_pre_ping=True,
    )


class Store:
    """The engine and the sessions of one process."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_store_engine(url)
        # SQLite has one writer: the hot paths of this process queue for it on a Python lock,
        # which wakes a waiter at once, instead of in SQLite's busy handler, which sleeps
        self.write_lock: threading.Lock | None = threading.Lock() if self.is_sqlite else None
        # the DBAPI module: ``store.shadow_sql`` sends statements to it directly
        self._driver: Any = self.engine.dialect.dbapi

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def create_schema(self) -> None:
        """Bring the schema up to date: ``alembic upgrade head`` (``cloud_api.store.migrations``)."""
        with self._errors_wrapped(), self.engine.begin() as connection:
            if not self.is_sqlite:
                lock = text("SELECT pg_advisory_xact_lock(:id)")
                connection.execute(lock, {"id": _SCHEMA_LOCK_ID})
            migrations.upgrade(connection)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session; database errors escaping it become ``StoreError``/``StoreUnavailable``."""
        with self._errors_wrapped(), Session(self.engine, expire_on_commit=False) as session:
            yield session

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A Core connection (the hot paths' way in), errors wrapped as ``session`` does;
        what is not committed when the block ends is rolled back."""
        with self._errors_wrapped(), self.engine.connect() as connection:
            yield connection

    def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the database answers."""
        with self._errors_wrapped(), self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _errors_wrapped(self) -> Iterator[None]:
        try:
            yield
        except CloudError:
            raise
        except (OperationalError, InterfaceError) as exc:  # the server went away, or the connection
            log.warning("database unavailable: %s", exc)
            raise StoreUnavailable(
                "the database is unavailable; retry shortly", retry_after=2.0
            ) from exc
        except DBAPIError as exc:
            if exc.connection_invalidated:  # a lost connection, seen by the pool
                log.warning("database unavailable: %s", exc)
                raise StoreUnavailable(
                    "the database is unavailable; retry shortly", retry_after=2.0
                ) from exc
            log.exception("database error")
            raise StoreError(f"database error: {type(exc).__name__}") from exc
        except SQLAlchemyError as exc:
            log.exception("database error")
            raise StoreError(f"database error: {type(exc).__name__}") from exc
        except self._driver.Error as exc:  # raised by statements sent to the driver itself
            if isinstance(exc, (self._driver.OperationalError, self._driver.InterfaceError)):
                log.warning("database unavailable: %s", exc)
                raise StoreUnavailable(
                    "the database is unavailable; retry shortly", retry_after=2.0
                ) from exc
            log.exception("database error")
            raise StoreError(f"database error: {type(exc).__name__}") from exc


def table_of(model: type[SQLModel]) -> Table:
    """The ``Table`` of a table model, for writes keyed by column name (``Shadow.meta`` is the
    ``metadata`` column)."""
    # SQLAlchemy sets __table__ when it maps the class; SQLModel's types do not declare it
    table: Table = model.__table__  # type: ignore[attr-defined]
    return table
