"""Fixtures every test package shares: the external services of CI and isolation helpers.

PostgreSQL and Mosquitto are read from ``TETHER_TEST_POSTGRES_URL`` and
``TETHER_TEST_MQTT_URL`` (``.ci/run`` sets both). Without them, or when they do not
answer, the tests that need them skip and say why.
"""

from __future__ import annotations

import os
import socket
import tempfile
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from schemas.topics import TopicScheme

# Every edge agent a test starts (in process or as a child) takes a free port for its
# function proxy instead of the fixed default 50011, so agents never collide.
os.environ.setdefault("TETHER_EDGE_FUNCTION_PROXY_PORT", "0")
# A `tether up` running on this machine records where it is in $XDG_STATE_HOME/tether/up.yaml
# for the CLI to find; the tests' CLI calls must not find someone else's.
os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="tether-tests-state-")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def free_port() -> int:
    """A TCP port free on loopback right now (for servers that cannot take port 0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def mosquitto_url() -> str:
    """URL of the machine's Mosquitto (anonymous, loopback), or skip."""
    url = os.environ.get("TETHER_TEST_MQTT_URL")
    if not url:
        pytest.skip("TETHER_TEST_MQTT_URL is not set (CI sets it to the local Mosquitto)")
    parts = urlsplit(url)
    if not _reachable(parts.hostname or "127.0.0.1", parts.port or 1883):
        pytest.skip(f"no MQTT broker answers at {url}")
    return url


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """URL of the machine's PostgreSQL, or skip."""
    url = os.environ.get("TETHER_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("TETHER_TEST_POSTGRES_URL is not set (CI sets it to the local PostgreSQL)")
    parts = urlsplit(url)
    if not _reachable(parts.hostname or "127.0.0.1", parts.port or 5432):
        pytest.skip(f"no PostgreSQL answers at {url}")
    return url


@pytest.fixture
def topic_scheme() -> TopicScheme:
    """A topic root of this test's own, so tests sharing one broker never see each other."""
    return TopicScheme(root=f"t{uuid.uuid4().hex[:10]}/tether/v1")


@pytest.fixture
def unique_name() -> Iterator[str]:
    yield f"n{uuid.uuid4().hex[:12]}"
