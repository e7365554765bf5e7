"""The bridge against a real Mosquitto: a plain paho client plays the node.

Every test has a topic root of its own (``topic_scheme``), so tests sharing the broker
never see each other; the retained status a test leaves is cleared at its end.
"""

from __future__ import annotations

import json
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import paho.mqtt.client as mqtt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from cloud_api.metrics import BRIDGE_MESSAGES
from cloud_api.mqtt.serving import ShadowServer
from cloud_api.runtime import Cloud
from cloud_api.services.nodes import get_node
from cloud_api.settings import CloudSettings
from schemas.topics import Suffix, TopicScheme
from tests.cloud_api.conftest import BACKENDS, admin_token, postgres_schema, serving
from tests.paho_clients import release_sockets

pytestmark = pytest.mark.mosquitto
TIMEOUT = 10.0
EMPTY = {
    "state": {"desired": {"apps": {}}, "reported": {}, "delta": {}},
    "metadata": {"desired": {}, "reported": {}},
    "version": 0,
    "timestamp": 0,
}


class FakeNode:
    """A paho client acting as node ``default/NAME``: publishes requests, collects replies."""

    def __init__(self, url: str, topics: TopicScheme, name: str = "n1", *, will: bool = False):
        self.topics, self.name = topics, name
        self.inbox: queue.Queue[tuple[str, bytes]] = queue.Queue()
        subscribed = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"node-{uuid.uuid4().hex[:12]}")
        client.on_message = lambda c, u, message: self.inbox.put((message.topic, message.payload))
        client.on_subscribe = lambda *args: subscribed.set()
        client.on_socket_open = lambda c, u, sock: sock.setsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
        )
        if will:
            client.will_set(self.topic(Suffix.STATUS), b'{"online": false}', qos=1, retain=True)
        parts = urlsplit(url)
        client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
        client.loop_start()
        # Replies only: were the node to hear its own requests too, Mosquitto (without
        # set_tcp_nodelay) would hold each reply ~40 ms behind the echo (Nagle + delayed ACK).
        root = topics.node_root("default", name)
        requests = ("shadow/get", "shadow/update", "resources/get")
        client.subscribe([(f"{root}/{request}/+", 1) for request in requests])
        assert subscribed.wait(TIMEOUT)
        self.client = client

    def topic(self, suffix: Suffix) -> str:
        return self.topics.topic("default", self.name, suffix)

    def send(self, suffix: Suffix, payload: Any, *, retain: bool = False) -> None:
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.client.publish(self.topic(suffix), raw, qos=1, retain=retain).wait_for_publish(TIMEOUT)

    def next(self, accept: Callable[[str, Any], bool]) -> tuple[str, Any]:
        """The next (topic, decoded payload) that ``accept`` takes, skipping others."""
        deadline = time.monotonic() + TIMEOUT
        while (left := deadline - time.monotonic()) > 0:
            try:
                topic, raw = self.inbox.get(timeout=left)
            except queue.Empty:
                break
            if raw and accept(topic, json.loads(raw)):
                return topic, json.loads(raw)
        pytest.fail(f"no awaited message within {TIMEOUT}s")

    def expect(self, suffix: Suffix) -> Any:
        return self.next(lambda topic, body: topic == self.topic(suffix))[1]

    def request(self, suffix: Suffix, payload: Any) -> tuple[str, Any]:
        """Send a request; ("accepted"|"rejected", reply), matched by clientToken if any."""
        token = payload.get("clientToken") if isinstance(payload, dict) else None
        self.send(suffix, payload)
        replies = {f"{self.topic(suffix)}/accepted", f"{self.topic(suffix)}/rejected"}
        def is_reply(topic: str, body: Any) -> bool:
            return topic in replies and (token is None or body.get("clientToken") == token)

        topic, reply = self.next(is_reply)
        return topic.rsplit("/", 1)[1], reply

    def close(self, *, abruptly: bool = False) -> None:
        if abruptly:  # the broker sees the connection drop and publishes the will
            self.client.loop_stop()
            release_sockets(self.client)  # closes the connection: no DISCONNECT is sent
            return
        self.send(Suffix.STATUS, b"", retain=True)  # clear the retained status
        self.client.disconnect()
        self.client.loop_stop()
        release_sockets(self.client)


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'tether.db'}"


@pytest.fixture
def bridged(
    make_settings: Callable[..., CloudSettings], mosquitto_url: str, topic_scheme: TopicScheme
) -> Iterator[Cloud]:
    with Cloud(make_settings(mqtt_url=mosquitto_url, topic_root=topic_scheme.root)) as cloud:
        cloud.create_node("n1")
        assert cloud.start_bridge().wait_ready(TIMEOUT), "the bridge did not connect and subscribe"
        yield cloud


@pytest.fixture
def node(bridged: Cloud, mosquitto_url: str, topic_scheme: TopicScheme) -> Iterator[FakeNode]:
    fake = FakeNode(mosquitto_url, topic_scheme)
    yield fake
    fake.close()


def test_the_bridge_socket_has_nagle_off(bridged: Cloud) -> None:
    assert bridged.bridge is not None
    sock = bridged.bridge.client.socket()
    assert sock is not None and sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1


def test_get_and_update_round_trip(node: FakeNode) -> None:
    assert node.request(Suffix.SHADOW_GET, {"clientToken": "g1"}) == (
        "accepted",
        {**EMPTY, "clientToken": "g1"},
    )
    update = {"state": {"reported": {"temp": 21}}, "clientToken": "u1"}
    kind, accepted = node.request(Suffix.SHADOW_UPDATE, update)
    assert kind == "accepted" and accepted["version"] == 1 and accepted["clientToken"] == "u1"
    documents = node.expect(Suffix.SHADOW_UPDATE_DOCUMENTS)
    assert documents["current"]["state"]["reported"] == {"temp": 21}


def test_a_rest_patch_reaches_the_node_as_a_delta(bridged: Cloud, node: FakeNode) -> None:
    with serving(bridged.app) as url:
        response = httpx.patch(
            f"{url}/v1/namespaces/default/nodes/n1/shadow",
            json={"state": {"desired": {"fan": "on"}}},
            headers={"Authorization": f"Bearer {admin_token(bridged)}"},
        )
    assert response.status_code == 200
    delta = {"state": {"fan": "on"}, "version": 1, "timestamp": response.json()["timestamp"]}
    assert node.expect(Suffix.SHADOW_UPDATE_DELTA) == delta


@pytest.mark.parametrize(
    ("payload", "code", "token"),
    [
        pytest.param(b"{bad json", 400, None, id="bad-json"),
        pytest.param(b'{"state": {"reported": {"a": "\xff"}}}', 415, None, id="not-utf8"),
        pytest.param(
            {"state": {"reported": {"a": 1}}, "version": 3, "clientToken": "c409"}, 409, "c409",
            id="stale-version",
        ),
        pytest.param(b"x" * 600_000, 413, None, id="oversize-payload"),
        pytest.param(
            {"state": {"reported": {"blob": "x" * 270_000}}, "clientToken": "c413"}, 413, "c413",
            id="oversize-state",
        ),
        pytest.param(
            {"state": {"desired": {"fan": "off"}}, "clientToken": "c403"}, 403, "c403",
            id="node-writes-desired",
        ),
    ],
)
def test_update_rejections(node: FakeNode, payload: Any, code: int, token: str | None) -> None:
    kind, rejected = node.request(Suffix.SHADOW_UPDATE, payload)
    assert (kind, rejected["code"], rejected.get("clientToken")) == ("rejected", code, token)
    assert node.request(Suffix.SHADOW_GET, {})[1]["version"] == 0  # nothing was written


def test_unknown_node_and_resources_are_404(
    bridged: Cloud, mosquitto_url: str, topic_scheme: TopicScheme
) -> None:
    ghost = FakeNode(mosquitto_url, topic_scheme, "ghost")
    try:
        for suffix, payload in [
            (Suffix.SHADOW_GET, {"clientToken": "x"}),
            (Suffix.SHADOW_UPDATE, {"state": {"reported": {"a": 1}}, "clientToken": "x"}),
            (Suffix.RESOURCES_GET, {"clientToken": "x", "items": []}),
        ]:
            kind, rejected = ghost.request(suffix, payload)
            assert (kind, rejected["code"], rejected["clientToken"]) == ("rejected", 404, "x")
    finally:
        ghost.close()


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def node_online(cloud: Cloud) -> bool:
    with cloud.store.session() as session:
        return get_node(session, "default", "n1").online


def test_status_and_the_last_will(
    bridged: Cloud, mosquitto_url: str, topic_scheme: TopicScheme
) -> None:
    node = FakeNode(mosquitto_url, topic_scheme, will=True)
    node.send(Suffix.STATUS, {"online": True, "timestamp": 1}, retain=True)
    wait_until(lambda: node_online(bridged))
    node.close(abruptly=True)
    wait_until(lambda: not node_online(bridged))
    FakeNode(mosquitto_url, topic_scheme).close()  # clears the retained status the will left


def test_the_worker_survives_garbage_on_every_topic(node: FakeNode) -> None:
    for suffix in (Suffix.SHADOW_GET, Suffix.SHADOW_UPDATE, Suffix.RESOURCES_GET, Suffix.STATUS):
        for garbage in (b"\xff\xfe", b"[[[[", b"", b"null", b"[" * 5000):
            node.send(suffix, garbage)
    assert node.request(Suffix.SHADOW_GET, {"clientToken": "alive"})[0] == "accepted"


reports = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=10,
).map(lambda value: json.dumps({"state": {"reported": value}, "clientToken": "f"}).encode())


# One cloud and one node serve every example: their state between examples does not matter.
ONE_CLOUD = [HealthCheck.function_scoped_fixture]


@settings(max_examples=60, deadline=None, suppress_health_check=ONE_CLOUD)
@given(
    suffix=st.sampled_from([Suffix.SHADOW_GET, Suffix.SHADOW_UPDATE, Suffix.RESOURCES_GET]),
    payload=st.binary(max_size=200) | reports,
)
def test_fuzzed_requests_over_the_broker_get_one_non_5xx_reply(
    node: FakeNode, suffix: Suffix, payload: bytes
) -> None:
    kind, reply = node.request(suffix, payload)
    assert kind == "accepted" or 400 <= reply["code"] < 500


@pytest.fixture(params=BACKENDS)
def shared_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """One store for several replicas (this module's ``store_url`` is SQLite only)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'shared.db'}"
        return
    with postgres_schema(request.getfixturevalue("postgres_url")) as url:
        yield url


def test_replicas_share_the_traffic_and_lose_no_update(
    tmp_path: Path, mosquitto_url: str, topic_scheme: TopicScheme, shared_store_url: str
) -> None:
    def replica(name: str) -> Cloud:
        return Cloud(
            CloudSettings(
                data_dir=tmp_path / name,
                database_url=shared_store_url,
                mqtt_url=mosquitto_url,
                topic_root=topic_scheme.root,
                share_group="tether-cloud",
                bridge_workers=1,
            )
        )

    with replica("a") as first, replica("b") as second:
        first.create_node("n1")
        for cloud in (first, second):
            assert cloud.start_bridge().wait_ready(TIMEOUT)
        node = FakeNode(mosquitto_url, topic_scheme)
        try:
            updates = 30
            for i in range(updates):
                node.send(Suffix.SHADOW_UPDATE, {"state": {"reported": {f"k{i}": i}}})
            accepted = [node.expect(Suffix.SHADOW_UPDATE_ACCEPTED) for _ in range(updates)]
            assert sorted(reply["version"] for reply in accepted) == list(range(1, updates + 1))
            final = node.request(Suffix.SHADOW_GET, {})[1]
            assert final["version"] == updates and len(final["state"]["reported"]) == updates
            metrics = [cloud.context.metrics for cloud in (first, second)]
            handled = [m.value(BRIDGE_MESSAGES, direction="in") for m in metrics]
            assert sum(handled) == updates + 1 and min(handled) > 0, handled
        finally:
            node.close()


def test_a_full_queue_is_answered_429_at_once(
    make_settings: Callable[..., CloudSettings],
    mosquitto_url: str,
    topic_scheme: TopicScheme,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    entered, release = threading.Event(), threading.Event()
    handle_batch = ShadowServer.handle_batch

    def slow(self: ShadowServer, batch: Sequence[tuple[str, bytes]]) -> None:
        entered.set()
        release.wait(TIMEOUT)
        handle_batch(self, batch)

    monkeypatch.setattr(ShadowServer, "handle_batch", slow)
    settings = make_settings(
        mqtt_url=mosquitto_url, topic_root=topic_scheme.root, bridge_workers=1, bridge_queue_size=1
    )
    with Cloud(settings) as cloud:
        cloud.create_node("n1")
        assert cloud.start_bridge().wait_ready(TIMEOUT)
        node = FakeNode(mosquitto_url, topic_scheme)
        try:
            node.send(Suffix.SHADOW_GET, {"clientToken": "t0"})  # taken by the worker, which blocks
            assert entered.wait(TIMEOUT)
            for i in range(1, 4):  # one waits in the queue, two overflow
                node.send(Suffix.SHADOW_GET, {"clientToken": f"t{i}"})
            busy = [node.expect(Suffix.SHADOW_GET_REJECTED) for _ in range(2)]
            assert [(r["code"], r["clientToken"]) for r in busy] == [(429, "t2"), (429, "t3")]
            release.set()
            served = [node.expect(Suffix.SHADOW_GET_ACCEPTED)["clientToken"] for _ in range(2)]
            assert served == ["t0", "t1"]
        finally:
            release.set()
            node.close()
