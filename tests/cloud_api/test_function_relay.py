"""The function relay: REST ``:invoke`` -> MQTT ``invoke`` -> a node's ``result`` -> REST.

Without a broker (``MemoryPublisher`` and direct ``resolve`` calls) for the relay's logic,
and against a real Mosquitto with a paho client playing a node that answers invokes.
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

from cloud_api.errors import AlreadyExists, Busy
from cloud_api.functions import FunctionRelay, parse_result, result_filter
from cloud_api.runtime import Cloud
from cloud_api.settings import CloudSettings
from cloud_api.transport import MemoryPublisher
from schemas.topics import TopicScheme
from tests.cloud_api.conftest import admin_token, serving

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


# -- REST without a broker --------------------------------------------------------------
@pytest.fixture
def with_node(cloud: Cloud, api: httpx.Client) -> httpx.Client:
    cloud.create_node("n1")
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


# -- against Mosquitto, with a node answering -------------------------------------------
class AnsweringNode:
    """A paho client as node default/n1: answers invokes the way an edge invoker does."""

    def __init__(self, url: str, topics: TopicScheme, answer: Callable[[str, Any], dict[str, Any] | None]):
        self.received: list[tuple[str, Any]] = []
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

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


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


@pytest.fixture
def relayed(
    make_settings: Callable[..., CloudSettings], mosquitto_url: str, topic_scheme: TopicScheme
) -> Iterator[httpx.Client]:
    with Cloud(make_settings(mqtt_url=mosquitto_url, topic_root=topic_scheme.root)) as cloud:
        cloud.create_node("n1")
        assert cloud.start_bridge().wait_ready(10)
        node = AnsweringNode(mosquitto_url, topic_scheme, answer)
        try:
            with serving(cloud.app) as url:
                headers = {"Authorization": f"Bearer {admin_token(cloud)}"}
                with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
                    yield client
        finally:
            node.close()


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


def test_the_relay_limits_come_from_the_settings(
    make_settings: Callable[..., CloudSettings],
) -> None:
    settings = make_settings(function_max_in_flight=3, function_timeout_seconds=2.5,
                             function_max_timeout_seconds=10)
    with Cloud(settings) as cloud:
        relay = cloud.context.functions
        assert (relay.max_in_flight, relay.timeout, relay.max_timeout) == (3, 2.5, 10)
        assert relay.bounded_timeout(None) == 2.5 and relay.bounded_timeout(99) == 10
