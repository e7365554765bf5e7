"""Fixtures of the edge agent's tests: fakes for the pure sync, identities and agents for
the integration tests against the machine's Mosquitto.

Nothing here is autouse, so the kube backend's tests (``kube/``) are not affected.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_runtime.agent import EdgeAgent
from edge_runtime.backends.base import Backend
from edge_runtime.cache import Cache
from edge_runtime.identity import Identity, save_identity
from edge_runtime.reconciling import Reconciler
from edge_runtime.settings import EdgeSettings
from edge_runtime.syncing import ShadowSync
from schemas.topics import TopicScheme
from tests.edge_runtime.fakes import (
    FACTS,
    FakeClock,
    FakeTransport,
    MirrorReconciler,
    make_identity,
)
from tests.edge_runtime.mqttcloud import MqttCloud, wipe_session
from tests.edge_runtime.nativeprocs import kill_leftovers
from tests.edge_runtime.resourcecloud import Catalog, ResourceCloud


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def transport() -> FakeTransport:
    return FakeTransport()


@pytest.fixture
def make_sync(
    tmp_path: Path, clock: FakeClock, transport: FakeTransport
) -> Iterator[Callable[..., ShadowSync]]:
    """Build a ShadowSync on a fake transport and clock, with a real cache in tmp_path."""
    caches: list[Cache] = []

    def make(**kwargs: Any) -> ShadowSync:
        cache = Cache(tmp_path / "edge")
        caches.append(cache)
        options: dict[str, Any] = {
            "clock": clock,
            "wallclock": lambda: 1_764_100_000.0,
            "heartbeat_seconds": 30.0,
            "debounce_seconds": 0.005,
            "token_prefix": "t",
        }
        options.update(kwargs)
        reconciler = options.pop("reconciler", MirrorReconciler(FACTS))
        return ShadowSync(transport, cache, reconciler=reconciler, **options)

    yield make
    for cache in caches:
        cache.close()


@pytest.fixture
def write_identity() -> Callable[..., Identity]:
    """Store an identity in a data dir, as activation would."""

    def write(data_dir: Path, url: str, namespace: str, node: str) -> Identity:
        identity = make_identity(url, namespace, node)
        save_identity(identity, data_dir)
        return identity

    return write


@pytest.fixture
def cloud(mosquitto_url: str, topic_scheme: TopicScheme) -> Iterator[MqttCloud]:
    """A minimal cloud answering shadow requests under this test's own topic root."""
    test_cloud = MqttCloud(mosquitto_url, topic_scheme)
    yield test_cloud
    test_cloud.close()


@pytest.fixture
def catalog() -> Catalog:
    """The resource versions ``rcloud`` serves on ``resources/get``."""
    return Catalog()


@pytest.fixture
def rcloud(
    mosquitto_url: str, topic_scheme: TopicScheme, catalog: Catalog
) -> Iterator[ResourceCloud]:
    """The minimal cloud, also answering ``resources/get`` from ``catalog``."""
    cloud = ResourceCloud(mosquitto_url, topic_scheme, catalog)
    yield cloud
    cloud.close()


@pytest.fixture
def agents(
    mosquitto_url: str, topic_scheme: TopicScheme, tmp_path: Path
) -> Iterator[Callable[..., EdgeAgent]]:
    """Start EdgeAgents with fast backoff; stops them, kills the processes they leave
    running and wipes their broker sessions."""
    started: list[EdgeAgent] = []
    client_ids: set[str] = set()

    def start(node: str, *, url: str | None = None, namespace: str = "default",
              reconciler: Reconciler | None = None, backend: Backend | None = None,
              **overrides: Any) -> EdgeAgent:
        data_dir = tmp_path / node
        identity = make_identity(url or mosquitto_url, namespace, node)
        save_identity(identity, data_dir)
        options: dict[str, Any] = {"data_dir": data_dir, "topic_root": topic_scheme.root,
                                   "reconnect_min_seconds": 0.05, "reconnect_max_seconds": 0.4}
        options.update(overrides)
        agent = EdgeAgent(EdgeSettings(**options), reconciler=reconciler, backend=backend)
        agent.start()
        started.append(agent)
        client_ids.add(identity.client_id)
        return agent

    yield start
    for agent in started:
        agent.stop()
    for agent in started:  # processes outlive their agent, on purpose
        kill_leftovers(Path(agent.settings.data_dir))
    for client_id in client_ids:
        wipe_session(mosquitto_url, client_id)

