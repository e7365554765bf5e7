"""A real embedded broker on port 0 per test, three known users, and a client factory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from broker.access import password_table
from broker.embedded import EmbeddedBroker, run_in_thread
from broker.settings import BrokerSettings
from cloud_api.runtime import Cloud
from cloud_api.settings import CloudSettings
from schemas.topics import TopicScheme
from tests.broker.clients import Probe

NODE_A, NODE_B, CLOUD = "ns1/node-a", "ns1/node-b", "tether-cloud"
PASSWORDS = {NODE_A: "pw-a", NODE_B: "pw-b", CLOUD: "pw-cloud"}


@dataclass(frozen=True)
class Topics:
    """Topic names of the two test nodes under this test's own root."""

    root: str

    def a(self, suffix: str) -> str:
        return f"{self.root}/ns1/node-a/{suffix}"

    def b(self, suffix: str) -> str:
        return f"{self.root}/ns1/node-b/{suffix}"


@pytest.fixture
def topics(topic_scheme: TopicScheme) -> Topics:
    return Topics(topic_scheme.root)


@pytest.fixture
def settings(topic_scheme: TopicScheme) -> BrokerSettings:
    return BrokerSettings(port=0, topic_root=topic_scheme.root, connect_timeout_seconds=1.0)


@pytest.fixture
def broker(settings: BrokerSettings) -> Iterator[EmbeddedBroker]:
    with run_in_thread(settings, password_table(PASSWORDS)) as running:
        yield running


ClientFactory = Callable[..., Probe]


@pytest.fixture
def connect(broker: EmbeddedBroker) -> Iterator[ClientFactory]:
    """``connect(username, password=<the right one>, **probe_options)`` -> a Probe.

    The CONNACK is in ``probe.connack``; every probe is closed after the test.
    """
    probes: list[Probe] = []

    def factory(username: str | None, password: str | None = None, **options: object) -> Probe:
        if password is None and username in PASSWORDS:
            password = PASSWORDS[username]
        probe = Probe(broker.port, username, password, **options)  # type: ignore[arg-type]
        probes.append(probe)
        probe.connect()
        return probe

    yield factory
    for probe in probes:
        probe.close()


@pytest.fixture
def cloud(connect: ClientFactory, topics: Topics) -> Probe:
    """The cloud, connected and subscribed to everything under the test's root."""
    probe = connect(CLOUD)
    assert not probe.connack.is_failure  # type: ignore[union-attr]
    assert probe.subscribe(f"{topics.root}/#").value == 1
    return probe


@pytest.fixture
def certifying_cloud(tmp_path: Path) -> Iterator[Cloud]:
    """A cloud on SQLite that activates nodes with a CSR (it advertises an mTLS broker)."""
    settings = CloudSettings(data_dir=tmp_path / "cloud", database_url=f"sqlite:///{tmp_path / 'c.db'}",
                             advertised_mqtts_url="mqtts://127.0.0.1:8883")
    with Cloud(settings) as opened:
        yield opened
