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
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
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


# 19 digits or more: an integer that may not fit 64 bits, which orjson would turn into a float.
# Found by mapping every digit to 0 and looking for 19 zeros: bytes.translate and ``in`` run
# in C, ~2 µs for a 1.4 kB document where re.search(r"\d{19}") took ~26 µs (py-spy had the
# regex at 13 % of the cloud's CPU under a stream of updates).
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_NUMBER = b"0" * 19


def encode_stored_json(value: Any) -> str:
    """A JSON column's text: compact, as every message is (``schemas.payloads.encode_json``)."""
    return encode_json(value).decode("utf-8")


def decode_stored_json(text: str | bytes) -> Any:
    """A JSON column's value. orjson, several times faster than the standard library, reads
    integers beyond 64 bits as floats and loses their digits; a text holding a number that
    long (rare) is read by the standard library instead, which keeps them."""
    data = text if isinstance(text, bytes) else text.encode("utf-8")
    if _LONG_NUMBER in data.translate(_DIGITS_TO_ZERO):
        return json.loads(data)
    return orjson.loads(data)


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
        self._kept = threading.local()  # each thread's kept connection (``kept_connection``)
        self._kept_all: set[Connection] = set()  # every thread's, to close them with the store
        self._kept_lock = threading.Lock()

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

    @contextmanager
    def write_transaction(self, *, kept: bool = False) -> Iterator[Connection]:
        """A connection in a transaction that holds the write lock from its start; the caller
        commits, and what is not committed when the block ends is rolled back.

        On SQLite that is ``write_lock``, then the database's writer lock (``BEGIN
        IMMEDIATE``): every writer of this process queues on the Python lock, which wakes a
        waiter at once, where SQLite's busy handler sleeps 1, 2, 5, 10 ms... between tries (a
        bridge batch meeting a liveness sweep used to wait there). On PostgreSQL, a plain
        transaction: row locks are the statements' business. ``kept``: on the calling
        thread's kept connection (``kept_connection``).
        """
        connecting = self.kept_connection() if kept else self.connect()
        with self.write_lock or nullcontext(), connecting as connection:
            connection.begin()  # explicit: statements sent to the driver bypass autobegin
            if self.is_sqlite:
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            yield connection

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        """``write_transaction``, committed if the block ends without an error: for the
        background writers (liveness, events, history pruning)."""
        with self.write_transaction() as connection:
            yield connection
            connection.commit()

    @contextmanager
    def kept_connection(self) -> Iterator[Connection]:
        """``connect``, on the calling thread's own connection, kept checked out between uses.

        For the bridge workers, a bounded set of threads serving batch after batch: a pool
        checkout, the reset on checkin and (PostgreSQL) the pre-ping's round trip were ~7 % of
        the cloud's CPU under a stream of updates. What is not committed when the block ends
        is rolled back, as with ``connect``. A connection whose block raised is closed (the
        pool invalidates it if it is broken) and the next block opens another: after a
        database outage, the first batch fails (503, retried by nodes) and the next is served.
        """
        with self._errors_wrapped():
            connection: Connection | None = getattr(self._kept, "connection", None)
            if connection is None:
                connection = self.engine.connect()
                self._kept.connection = connection
                with self._kept_lock:
                    self._kept_all.add(connection)
            try:
                yield connection
                if connection.in_transaction():
                    connection.rollback()
            except BaseException:
                self._forget_kept(connection)
                raise

    def _forget_kept(self, connection: Connection) -> None:
        self._kept.connection = None
        with self._kept_lock:
            self._kept_all.discard(connection)
        try:
            connection.close()
        except Exception:  # already broken: the pool has let it go
            log.debug("closing a failed kept connection", exc_info=True)

    def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the database answers."""
        with self._errors_wrapped(), self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def close(self) -> None:
        with self._kept_lock:
            kept, self._kept_all = list(self._kept_all), set()
        for connection in kept:
            try:
                connection.close()
            except Exception:  # a thread may still be using it: the process is stopping
                log.debug("closing a kept connection", exc_info=True)
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
