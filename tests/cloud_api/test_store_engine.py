"""The store: SQLite durability pragmas, and database errors wrapped in the cloud's tree."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from cloud_api.errors import StoreError, StoreUnavailable
from cloud_api.store.engine import Store, decode_stored_json, encode_stored_json
from cloud_api.store.models import Namespace
from tests.conftest import free_port


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(f"sqlite:///{tmp_path / 'nested' / 'tether.db'}")
    opened.create_schema()
    yield opened
    opened.close()


@pytest.mark.parametrize(
    ("pragma", "value"),
    [("journal_mode", "wal"), ("synchronous", 2), ("foreign_keys", 1), ("busy_timeout", 30_000)],
)
def test_sqlite_is_durable_and_checks_foreign_keys(
    store: Store, pragma: str, value: object
) -> None:
    with store.engine.connect() as connection:  # synchronous 2 is FULL
        assert connection.execute(text(f"PRAGMA {pragma}")).scalar() == value


@pytest.mark.parametrize("number", [
    2**64, -(2**63) - 1, 12345678901234567890123, 10**30, 9223372036854775807, -1, 0,
])
def test_stored_json_keeps_every_integer_exact(number: int) -> None:
    """orjson reads integers beyond 64 bits as floats: those texts go to the standard library."""
    for value in ([number], {"ts": 1765000000, "n": number, "x": 0.5}, {"s": f"id-{number}"}):
        decoded = decode_stored_json(encode_stored_json(value))
        assert decoded == value
        assert decoded.__repr__() == value.__repr__()  # an int stays an int
    assert decode_stored_json(encode_stored_json([number]).encode()) == [number]


def test_database_errors_leave_sessions_as_store_errors(store: Store) -> None:
    with pytest.raises(StoreError) as caught, store.session() as session:
        session.add(Namespace(name="a", created_at=1))
        session.add(Namespace(name="a", created_at=1))
        session.commit()
    assert isinstance(caught.value.__cause__, IntegrityError) and caught.value.code == 500


def test_a_database_that_does_not_answer_is_retryable() -> None:
    store = Store(f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none")
    with pytest.raises(StoreUnavailable) as caught:
        store.ping()
    assert caught.value.retry_after > 0
    store.close()


def test_a_thread_keeps_its_connection_and_uncommitted_work_is_rolled_back(store: Store) -> None:
    with store.kept_connection() as first:
        first.begin()
        first.execute(text("INSERT INTO namespaces (name, created_at) VALUES ('kept', 1)"))
    with store.kept_connection() as again:  # the same connection, its transaction gone
        assert again is first and not again.in_transaction()
        assert again.execute(text("SELECT count(*) FROM namespaces")).scalar() == 0
    other: list[object] = []

    def elsewhere() -> None:
        with store.kept_connection() as connection:
            other.append(connection)

    thread = threading.Thread(target=elsewhere)
    thread.start()
    thread.join()
    assert other and other[0] is not first


def test_a_kept_connection_that_failed_is_replaced(store: Store) -> None:
    with store.kept_connection() as first:
        pass
    with pytest.raises(StoreUnavailable), store.kept_connection() as connection:
        connection.execute(text("SELECT * FROM no_such_table"))  # OperationalError
    assert first.closed
    with store.kept_connection() as second:
        assert second is not first
        assert second.execute(text("SELECT 1")).scalar() == 1
    store.close()
    assert second.closed  # closed with the store


def test_background_writes_hold_the_write_lock_and_commit_or_roll_back(store: Store) -> None:
    assert store.write_lock is not None
    with store.writing() as connection:
        assert store.write_lock.locked()  # the bridge's batches queue behind it, and it behind them
        connection.execute(text("INSERT INTO namespaces (name, created_at) VALUES ('kept', 1)"))
    assert not store.write_lock.locked()
    with pytest.raises(RuntimeError), store.writing() as connection:
        connection.execute(text("INSERT INTO namespaces (name, created_at) VALUES ('lost', 1)"))
        raise RuntimeError("the block failed")
    with store.connect() as connection:
        names = connection.execute(text("SELECT name FROM namespaces")).scalars().all()
    assert names == ["kept"]
