"""``Liveness`` without a broker: what it hears, what it records, whom it marks offline."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud_api.mqtt.liveness import Liveness
from cloud_api.runtime import Cloud
from cloud_api.services.nodes import get_node, set_online
from cloud_api.settings import CloudSettings
from schemas.topics import Suffix, TopicScheme
from tests.cloud_api.conftest import Clock

TOPICS = TopicScheme()


class Ticker:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def opened(tmp_path: Path, clock: Clock) -> Iterator[Cloud]:
    settings = CloudSettings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 't.db'}")
    with Cloud(settings, clock=clock) as cloud:
        for name in ("a", "b"):
            cloud.create_node(name)
            with cloud.store.session() as session:
                set_online(session, "default", name, online=True, now=int(clock.now))
        yield cloud


def online(cloud: Cloud, name: str) -> bool:
    with cloud.store.session() as session:
        return bool(get_node(session, "default", name).online)


def status(name: str) -> str:
    return TOPICS.topic("default", name, Suffix.STATUS)


def test_a_silent_node_is_marked_offline_a_heard_one_is_not(opened: Cloud, clock: Clock) -> None:
    ticker, connected = Ticker(), [True]
    liveness = Liveness(opened.store, TOPICS, timeout=90, connected=lambda: connected[0],
                        now=opened.context.now, monotonic=ticker)
    assert liveness.sweep() == []  # just connected: nobody is judged yet
    clock.now += 100
    ticker.now += 100
    liveness.heard(f"{TOPICS.root}/default/a/shadow/update", b"{}")
    assert liveness.sweep() == [("default", "b")]
    assert online(opened, "a") and not online(opened, "b")


def test_a_will_is_no_sign_of_life(opened: Cloud, clock: Clock) -> None:
    ticker = Ticker()
    liveness = Liveness(opened.store, TOPICS, timeout=90, connected=lambda: True,
                        now=opened.context.now, monotonic=ticker)
    liveness.sweep()
    clock.now += 100
    ticker.now += 100
    liveness.heard(status("a"), b'{"online": true}')
    liveness.heard(status("a"), b'{"online": false}')
    assert sorted(liveness.sweep()) == [("default", "a"), ("default", "b")]


def test_silence_counts_only_while_the_bridge_is_connected(opened: Cloud, clock: Clock) -> None:
    ticker, connected = Ticker(), [False]
    liveness = Liveness(opened.store, TOPICS, timeout=90, connected=lambda: connected[0],
                        now=opened.context.now, monotonic=ticker)
    clock.now += 1000
    ticker.now += 1000
    assert liveness.sweep() == []  # the cloud could not hear anyone
    connected[0] = True
    assert liveness.sweep() == []  # connected now: nodes get a full timeout to speak
    ticker.now += 91
    assert len(liveness.sweep()) == 2


@pytest.mark.parametrize("garbage", [b"\xff\xfe", b"[" * 5000, b"", b"null", b'{"online": 1}'])
def test_garbage_on_status_is_no_sign_of_life_and_never_raises(opened: Cloud, garbage: bytes) -> None:
    liveness = Liveness(opened.store, TOPICS, timeout=90, connected=lambda: True,
                        now=opened.context.now)
    handled: list[object] = []
    liveness.watching(handled.append)([(status("a"), garbage)])
    assert handled == [[(status("a"), garbage)]] and liveness._heard == {}
