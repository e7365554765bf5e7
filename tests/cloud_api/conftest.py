"""Fixtures of the cloud tests: a ``Cloud`` on SQLite and on PostgreSQL, and its API over HTTP.

``store_url`` is parametrized, so every test that uses ``cloud`` or ``api`` runs on both
databases. PostgreSQL tests get a schema of their own (``search_path`` in the URL),
dropped afterwards: parallel runs never collide and nothing is left behind.

The API is served by a real uvicorn on port 0 (Starlette's TestClient is deprecated with
the installed httpx and would turn every test into a warning), so requests cross a real
socket, as in production. One server runs for the session and forwards to the app of the
test at hand: starting and stopping uvicorn per test would cost more than the tests.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import update

from cloud_api.runtime import Cloud, bind_http
from cloud_api.settings import CloudSettings
from cloud_api.store.models import Shadow

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@contextmanager
def postgres_schema(postgres_url: str) -> Iterator[str]:
    """A fresh schema in the test database; yields a URL that uses it; drops it after."""
    schema = f"tether_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    try:
        separator = "&" if "?" in postgres_url else "?"
        yield f"{postgres_url}{separator}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db' / 'tether.db'}"
        return
    with postgres_schema(request.getfixturevalue("postgres_url")) as url:
        yield url


class Clock:
    """A settable clock for ``Cloud(clock=...)``: tests move time instead of sleeping."""

    def __init__(self, now: float = 1_800_000_000) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_settings(tmp_path: Path, store_url: str) -> Callable[..., CloudSettings]:
    def make(**overrides: Any) -> CloudSettings:
        values: dict[str, Any] = {"data_dir": tmp_path / "data", "database_url": store_url}
        return CloudSettings(**{**values, **overrides})

    return make


@pytest.fixture
def cloud(make_settings: Callable[..., CloudSettings], clock: Clock) -> Iterator[Cloud]:
    with Cloud(make_settings(), clock=clock) as opened:
        yield opened


@contextmanager
def serving(app: FastAPI, *, tls: tuple[Path, Path] | None = None) -> Iterator[str]:
    """Serve ``app`` on a free loopback port in a thread; yields its base URL.

    ``tls``: (certificate, key) files to serve HTTPS with."""
    sock = bind_http("127.0.0.1", 0)
    port = sock.getsockname()[1]
    certfile, keyfile = tls if tls is not None else (None, None)
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning",
                                           ssl_certfile=certfile, ssl_keyfile=keyfile))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.005)
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def admin_token(cloud: Cloud) -> str:
    return Path(cloud.admin_token_path).read_text(encoding="utf-8").strip()


class Dispatcher:
    """An ASGI app that forwards to the app of the current test (one server per session)."""

    def __init__(self) -> None:
        self.target: FastAPI | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert self.target is not None, "no app is being served"
        await self.target(scope, receive, send)


@pytest.fixture(scope="session")
def http_server() -> Iterator[tuple[str, Dispatcher]]:
    dispatcher = Dispatcher()
    with serving(dispatcher) as url:  # type: ignore[arg-type]
        yield url, dispatcher


@pytest.fixture
def api_url(cloud: Cloud, http_server: tuple[str, Dispatcher]) -> Iterator[str]:
    url, dispatcher = http_server
    dispatcher.target = cloud.app
    try:
        yield url
    finally:
        dispatcher.target = None


@pytest.fixture
def api(cloud: Cloud, api_url: str) -> Iterator[httpx.Client]:
    """An HTTP client of the cloud's API, authenticated with the admin token."""
    headers = {"Authorization": f"Bearer {admin_token(cloud)}"}
    with httpx.Client(base_url=api_url, headers=headers, timeout=30) as client:
        yield client


@pytest.fixture
def anonymous(api_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_url, timeout=30) as client:
        yield client


def seed_shadow(
    cloud: Cloud,
    node: str,
    *,
    desired: Any,
    reported: Any,
    version: int,
    namespace: str = "default",
) -> None:
    """Put a node's shadow in a given state (for the conformance vectors' ``before``)."""
    with cloud.store.session() as session:
        session.exec(
            update(Shadow)
            .where(Shadow.namespace == namespace, Shadow.node == node)  # type: ignore[arg-type]
            .values(desired=desired, reported=reported, version=version)
        )
        session.commit()
