"""The store: SQLite durability pragmas, and database errors wrapped in the cloud's tree."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from cloud_api.errors import StoreError, StoreUnavailable
from cloud_api.store.engine import Store
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
