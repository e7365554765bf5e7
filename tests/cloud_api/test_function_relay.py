"""The function relay: REST ``:invoke`` -> MQTT ``invoke`` -> a node's ``result`` -> REST.

Without a broker (``MemoryPublisher`` and direct ``resolve`` calls) for the relay's logic,
and against a real Mosquitto with a paho client playing a node that answers invokes. A
node the cloud knows is offline is refused at once (503), never waited for.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from cloud_api.errors import AlreadyExists, Busy, NodeOffline
from cloud_api.mqtt.functions import FunctionRelay, parse_result, refuse_if_offline, result_filter
from cloud_api.mqtt.transport import MemoryPublisher
from cloud_api.runtime import Cloud
from cloud_api.services.nodes import set_online
from cloud_api.settings import CloudSettings
from schemas.messages import status_payload
from schemas.topics import TopicScheme
from tests.cloud_api.conftest import Clock, admin_token, serving
from tests.paho_clients import release_sockets

T = TopicScheme()
INVOKE = T.function_topic("default", "n1", "calc", "add", result=False)
RESULT = T.function_topic("default", "n1", "calc", "add", result=True)
URL = "/v1/namespaces/default/nodes/n1/functions/calc/add:invoke"


def submit(relay: FunctionRelay, publisher: MemoryPublisher, invoke_id: str | None = None) -> Any:
    return relay.submit(publisher, topics=T, namespace="default", node="n1", app="calc",
                        function="add", payload={"a": 1}, timeout=5.0, invoke_id=invoke_id)


def test_submit_publishes_and_resolve_answers() -> None:
    relay, publisher = FunctionRelay(), MemoryPublisher()
    invoke_id, future = submit(relay, publisher)
    assert publisher.on(INVOKE) == [{"invokeId": invoke_id, "payload": {"a": 1}, "timeout": 5.0}]
    other_node = T.function_topic("default", "n2", "calc", "add", result=True)
    relay.resolve(other_node, json.dumps({"invokeId": invoke_id, "result": 1}).encode())
    relay.resolve(RESULT, b"garbage")
    assert not future.done() and relay.in_flight == 1  # only the invoked node may answer
    relay.resolve(RESULT, json.dumps({"invokeId": invoke_id, "result": {"sum": 3}}).encode())
    assert future.result(1).result == {"sum": 3} and relay.in_flight == 0
    relay.resolve(RESULT, json.dumps({"invokeId": invoke_id, "result": 4}).encode())  # late: ignored


def test_in_flight_is_bounded_and_ids_unique() -> None:
    relay, publisher = FunctionRelay(max_in_flight=1), MemoryPublisher()
    submit(relay, publisher, "one")
    with pytest.raises(AlreadyExists):
        submit(relay, publisher, "one")
    with pytest.raises(Busy):
        submit(relay, publisher, "two")
    relay.forget("one")
    submit(relay, publisher, "two")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"invokeId": "i", "result": None}, (None, None)),
        ({"invokeId": "i", "result": "AA==", "encoding": "base64"}, ("AA==", None)),
        ({"invokeId": "i", "error": {"code": 404, "message": "m"}}, (None, {"code": 404, "message": "m"})),
        ({"invokeId": "i", "error": {"code": 200}}, (None, {"code": 502, "message": "the node sent a malformed error"})),
        ({"invokeId": "i"}, None),
        ({"invokeId": "i", "result": 1, "encoding": "rot13"}, None),
        ([], None),
    ],
)
def test_parse_result(body: Any, expected: Any) -> None:
    outcome = parse_result(body)
    assert (None if outcome is None else (outcome.result, outcome.error)) == expected


def test_result_filter_is_unshared() -> None:
    assert result_filter(T) == "tether/v1/+/+/functions/+/+/result"


@pytest.mark.parametrize(
    ("online", "last_seen", "message"),
    [
        (True, None, None),
        (True, 1_800_000_000, None),
        (False, None, "node default/n1 is offline: it has never connected; nothing was sent to it"),
        (False, 1_799_999_958,
         "node default/n1 is offline since 2027-01-15T07:59:18Z (42 s ago); nothing was sent to it"),
    ],
)
def test_refuse_if_offline(online: bool, last_seen: int | None, message: str | None) -> None:
    def refuse() -> None:
        refuse_if_offline("default", "n1", online=online, last_seen=last_seen, now=1_800_000_000.5)

    if message is None:
        refuse()
        return
    with pytest.raises(NodeOffline) as caught:
        refuse()
    assert caught.value.code == 503 and caught.value.message == message
    assert caught.value.retry_after > 0


def mark(cloud: Cloud, node: str, *, online: bool, now: int) -> None:
    """Record a status for ``node`` as the bridge does when one arrives."""
    with cloud.store.session() as session:
        assert set_online(session, "default", node, online=online, now=now)


# -- REST without a broker --------------------------------------------------------------
@pytest.fixture
def with_node(cloud: Cloud, api: httpx.Client, clock: Clock) -> httpx.Client:
    """Node n1, online as far as the cloud knows (its last status said so)."""
    cloud.create_node("n1")
    mark(cloud, "n1", online=True, now=int(clock.now))
    return api


def test_rest_times_out_with_504_when_no_one_answers(with_node: httpx.Client, cloud: Cloud) -> None:
    response = with_node.post(f"{URL}?timeout=0.2", json={"a": 1})
    assert response.status_code == 504 and response.json()["code"] == 504
    assert response.headers["x-tether-invoke-id"]
    assert cloud.context.functions.in_flight == 0


def test_rest_refusals(with_node: httpx.Client, cloud: Cloud, anonymous: httpx.Client) -> None:
    assert anonymous.post(URL, json={}).status_code == 401
    assert with_node.post("/v1/namespaces/default/nodes/ghost/functions/calc/add:invoke").status_code == 404
    assert with_node.post(URL, content=b"{nope").status_code == 400
    assert with_node.post(f"{URL}?timeout=0").status_code == 400
    assert with_node.post(URL, headers={"X-Tether-Invoke-Id": "x" * 65}).status_code == 400
    assert with_node.post("/v1/namespaces/default/nodes/n1/functions/Calc/add:invoke").status_code == 400
    cloud.context.functions.max_in_flight = 0
    busy = with_node.post(URL)
    assert busy.status_code == 429 and busy.headers["retry-after"] == "1"


@pytest.mark.parametrize("seen_ago", [None, 90])
def test_an_offline_node_is_refused_at_once_with_when_it_was_last_seen(
    cloud: Cloud, api: httpx.Client, clock: Clock, seen_ago: int | None
) -> None:
    """Nothing is published and nothing waits: 503 long before the 30 s relay timeout."""
    cloud.create_node("n1")
    if seen_ago is not None:  # it was online, then its status (or its will) said offline
        mark(cloud, "n1", online=True, now=int(clock.now) - 600)
        mark(cloud, "n1", online=False, now=int(clock.now) - seen_ago)
    assert cloud.context.functions.timeout == 30
    started = time.monotonic()
    response = api.post(URL, json={"a": 1})
    elapsed = time.monotonic() - started
    assert response.status_code == 503 and response.json()["code"] == 503
    assert response.headers["retry-after"] == "5"
    message = response.json()["message"]
    assert "\n" not in message and message.startswith("node default/n1 is offline")
    if seen_ago is None:
        assert "never connected" in message
    else:
        assert "since 2027-01-15T07:58:30Z (90 s ago)" in message
    assert elapsed < 5, f"{elapsed:.2f} s: the refusal waited for something"
    assert cloud.context.functions.in_flight == 0
    # inputs are still checked first: a bad request to an offline node is a 400
    assert api.post(URL, content=b"{nope").status_code == 400


# -- against Mosquitto, with a node answering -------------------------------------------
class AnsweringNode:
    """A paho client as node default/n1: answers invokes the way an edge invoker does."""

    def __init__(self, url: str, topics: TopicScheme, answer: Callable[[str, Any], dict[str, Any] | None]):
        self.received: list[tuple[str, Any]] = []
        self.status_topic = f"{topics.node_root('default', 'n1')}/status"
        subscribed = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"node-{uuid.uuid4().hex[:12]}")

        def on_message(c: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
            request = json.loads(message.payload)
            self.received.append((message.topic, request))
            body = answer(message.topic.split("/")[-2], request)
            if body is not None:
                c.publish(message.topic.rsplit("/", 1)[0] + "/result", json.dumps(body), qos=1)

        client.on_message = on_message
        client.on_subscribe = lambda *args: subscribed.set()
        parts = urlsplit(url)
        client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
        client.loop_start()
        client.subscribe(f"{topics.node_root('default', 'n1')}/functions/+/+/invoke", qos=1)
        assert subscribed.wait(10)
        self.client = client

    def status(self, *, online: bool) -> None:
        """Publish the retained status an agent publishes (its will, when it is offline)."""
        payload = json.dumps(status_payload(online, timestamp=int(time.time())))
        self.client.publish(self.status_topic, payload, qos=1, retain=True).wait_for_publish(10)

    def close(self) -> None:
        self.client.publish(self.status_topic, b"", qos=1, retain=True).wait_for_publish(10)
        self.client.disconnect()
        self.client.loop_stop()
        release_sockets(self.client)


def answer(function: str, request: dict[str, Any]) -> dict[str, Any] | None:
    invoke_id, event = request["invokeId"], request["payload"]
    if function == "add":
        return {"invokeId": invoke_id, "result": {"sum": event["a"] + event["b"]}}
    if function == "raw":
        return {"invokeId": invoke_id, "result": base64.b64encode(b"\x00\x01").decode(), "encoding": "base64"}
    if function == "boom":
        error = {"code": 502, "message": "calc/boom failed: ValueError: no", "error": {"type": "ValueError", "message": "no"}}
        return {"invokeId": invoke_id, "error": error}
    return None  # "slow": never answers


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'tether.db'}"


def shown_online(client: httpx.Client, *, online: bool) -> None:
    """Wait until the cloud's view of n1 (from the status the bridge received) is ``online``."""
    deadline = time.monotonic() + 10
    while client.get("/v1/namespaces/default/nodes/n1").json()["online"] != online:
        assert time.monotonic() < deadline, f"n1 never shown online={online}"
        time.sleep(0.02)


@pytest.fixture
def answering(
    make_settings: Callable[..., CloudSettings], mosquitto_url: str, topic_scheme: TopicScheme
) -> Iterator[tuple[httpx.Client, AnsweringNode]]:
    """The cloud's API, and node n1 answering invokes, online (its status said so)."""
    with Cloud(make_settings(mqtt_url=mosquitto_url, topic_root=topic_scheme.root)) as cloud:
        cloud.create_node("n1")
        assert cloud.start_bridge().wait_ready(10)
        node = AnsweringNode(mosquitto_url, topic_scheme, answer)
        try:
            with serving(cloud.app) as url:
                headers = {"Authorization": f"Bearer {admin_token(cloud)}"}
                with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
                    node.status(online=True)
                    shown_online(client, online=True)
                    yield client, node
        finally:
            node.close()


@pytest.fixture
def relayed(answering: tuple[httpx.Client, AnsweringNode]) -> httpx.Client:
    return answering[0]


@pytest.mark.mosquitto
def test_rest_invocations_through_a_real_broker(relayed: httpx.Client) -> None:
    response = relayed.post(URL, json={"a": 2, "b": 3}, headers={"X-Tether-Invoke-Id": "rest-1"})
    assert response.status_code == 200 and response.json() == {"sum": 5}
    assert response.headers["x-tether-invoke-id"] == "rest-1"
    base = "/v1/namespaces/default/nodes/n1/functions/calc"
    raw = relayed.post(f"{base}/raw:invoke")
    assert raw.content == b"\x00\x01" and raw.headers["content-type"] == "application/octet-stream"
    failed = relayed.post(f"{base}/boom:invoke", json={})
    assert failed.status_code == 502 and failed.json()["error"]["type"] == "ValueError"
    started = time.monotonic()
    slow = relayed.post(f"{base}/slow:invoke?timeout=0.3", json={})
    assert slow.status_code == 504 and time.monotonic() - started < 5


@pytest.mark.mosquitto
def test_concurrent_invocations_each_get_their_own_result(relayed: httpx.Client) -> None:
    results: dict[int, Any] = {}

    def one(i: int) -> None:
        results[i] = relayed.post(URL, json={"a": i, "b": 1000}).json()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == {i: {"sum": i + 1000} for i in range(20)}


@pytest.mark.mosquitto
def test_a_node_whose_status_says_offline_is_answered_503_at_once(
    answering: tuple[httpx.Client, AnsweringNode],
) -> None:
    """Through the bridge: the node's status goes offline, the very next invoke is a 503."""
    client, node = answering
    assert client.post(URL, json={"a": 1, "b": 1}).json() == {"sum": 2}
    node.status(online=False)
    shown_online(client, online=False)
    received = len(node.received)
    started = time.monotonic()
    refused = client.post(URL, json={"a": 1, "b": 1})
    elapsed = time.monotonic() - started
    assert refused.status_code == 503 and "is offline since" in refused.json()["message"]
    assert elapsed < 5, f"{elapsed:.2f} s: the refusal waited (the relay's timeout is 30 s)"
    node.status(online=True)
    shown_online(client, online=True)
    assert client.post(URL, json={"a": 2, "b": 2}).json() == {"sum": 4}
    # in order on one topic: had the refused invoke been published, it would have come first
    assert [request["payload"] for _, request in node.received[received:]] == [{"a": 2, "b": 2}]


def test_the_relay_limits_come_from_the_settings(
    make_settings: Callable[..., CloudSettings],
) -> None:
    settings = make_settings(function_max_in_flight=3, function_timeout_seconds=2.5,
                             function_max_timeout_seconds=10)
    with Cloud(settings) as cloud:
        relay = cloud.context.functions
        assert (relay.max_in_flight, relay.timeout, relay.max_timeout) == (3, 2.5, 10)
        assert relay.bounded_timeout(None) == 2.5 and relay.bounded_timeout(99) == 10
