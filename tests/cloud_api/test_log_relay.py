"""The cloud's side of logs and events: the relay, the bridge's routing, the event writer
(batched, deduplicated, paged, pruned; SQLite and PostgreSQL), the REST endpoints, and a
paho client playing a node over a real Mosquitto (tail, errors, follow with renewals, close).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from cloud_api.mqtt.log_relay import LogRelay, node_output_filters, route_node_output
from cloud_api.mqtt.transport import MemoryPublisher
from cloud_api.runtime import Cloud
from cloud_api.services.nodes import set_online
from cloud_api.settings import CloudSettings
from cloud_api.store.event_writing import EventWriter
from schemas.events import AppEvent, EventKind
from schemas.logs import LogChunk
from schemas.messages import status_payload
from schemas.topics import Suffix, TopicScheme
from tests.cloud_api.conftest import Clock, admin_token, serving
from tests.paho_clients import release_sockets

T = TopicScheme()
LOGS = "/v1/namespaces/default/nodes/n1/logs"


# -- the relay and the routing, without a broker ------------------------------------------
def test_a_chunk_is_accepted_only_from_the_streams_node() -> None:
    async def scenario() -> None:
        relay, publisher = LogRelay(), MemoryPublisher()
        stream = relay.open(publisher, topics=T, namespace="default", node="n1", app="web",
                            service=None, tail=5, follow=False, lease=15)
        request = publisher.on(T.topic("default", "n1", Suffix.LOGS_REQUEST))
        assert request == [{"streamId": stream.stream_id, "op": "open", "app": "web", "tail": 5,
                            "follow": False, "lease": 15}]
        chunk = json.dumps(LogChunk(stream.stream_id, 0, ("hi",), done=True).wire()).encode()
        relay.resolve(T.topic("default", "n2", Suffix.LOGS_DATA), chunk)  # another node
        relay.resolve(T.topic("default", "n1", Suffix.LOGS_DATA), b"garbage")
        await asyncio.sleep(0.01)
        assert stream.chunks.empty()
        relay.resolve(T.topic("default", "n1", Suffix.LOGS_DATA), chunk)
        got = await asyncio.wait_for(stream.chunks.get(), 1)
        assert got.lines == ("hi",) and got.done
        relay.close(publisher, stream)
        assert relay.open_streams == 0
        assert publisher.messages[-1].json() == {"streamId": stream.stream_id, "op": "close"}
        relay.max_streams = 0
        with pytest.raises(Exception, match="too many log streams"):
            relay.open(publisher, topics=T, namespace="default", node="n1", app="web",
                       service=None, tail=5, follow=False, lease=15)

    asyncio.run(scenario())


def test_the_bridge_routes_chunks_events_and_the_rest() -> None:
    handled: list[str] = []
    sunk: list[tuple[str, str, list[AppEvent]]] = []

    class Sink:
        def submit(self, namespace: str, node: str, events: Any) -> None:
            sunk.append((namespace, node, list(events)))

    dispatch = route_node_output(LogRelay(), Sink(), T, lambda batch: handled.extend(t for t, _ in batch))
    event = {"time": 1, "app": "web", "service": "api", "kind": "Crashed", "message": "m", "count": 2}
    dispatch([
        (T.topic("default", "n1", Suffix.SHADOW_GET), b"{}"),
        (T.topic("default", "n1", Suffix.LOGS_DATA), b'{"streamId": "x", "seq": 0}'),
        (T.topic("default", "n1", Suffix.EVENTS), json.dumps({"events": [event, {"bad": 1}]}).encode()),
        (T.topic("default", "n1", Suffix.EVENTS), b"not json"),
    ])
    assert handled == [T.topic("default", "n1", Suffix.SHADOW_GET)]
    assert sunk == [("default", "n1", [AppEvent(1, "web", "api", EventKind.CRASHED, "m", 2)])]
    assert node_output_filters(T, share_group="g") == [
        "tether/v1/+/+/logs/data", "$share/g/tether/v1/+/+/events"]


# -- events: stored in batches, deduplicated, paged, pruned -------------------------------
def crash(node: str, app: str, when: int, message: str = "api-0 exited: exit code 3") -> AppEvent:
    return AppEvent(when, app, "api", EventKind.CRASHED, message)


def test_events_are_deduplicated_paged_and_pruned(cloud: Cloud, api: httpx.Client, clock: Clock) -> None:
    now = int(clock.now)
    writer = EventWriter(cloud.store, now=cloud.context.now, max_per_node=30)
    writer.start()
    try:
        writer.submit("default", "n1", [crash("n1", "web", now - 10)] * 3)
        writer.submit("default", "n1", [crash("n1", "web", now - 5, message="api-0 exited: exit code 3")])
        writer.submit("default", "n2", [crash("n2", "web", now - 7)])
        writer.submit("default", "n1", [crash("n1", f"app{i}", now - 100 + i) for i in range(40)])
        writer.submit("other", "n1", [crash("n1", "web", now)])
        assert writer.wait_idle()
        web = api.get("/v1/namespaces/default/events", params={"app": "web"}).json()
        assert web["continue"] is None
        assert [(e["node"], e["count"]) for e in web["items"]] == [("n1", 4), ("n2", 1)]
        assert web["items"][0] == {"time": "2027-01-15T07:59:55Z", "node": "n1", "app": "web",
                                   "service": "api", "kind": "Crashed",
                                   "message": "api-0 exited: exit code 3", "count": 4}
        seen: list[tuple[str, str]] = []
        page: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 7, **({"continue": page} if page else {})}
            found = api.get("/v1/namespaces/default/events", params=params).json()
            assert len(found["items"]) <= 7
            seen += [(e["node"], e["app"]) for e in found["items"]]
            page = found["continue"]
            if page is None:
                break
        assert len(seen) == len(set(seen)) == 42  # each exactly once
        assert api.get("/v1/namespaces/default/events", params={"node": "n2"}).json()["items"][0]["node"] == "n2"
        # retention: n1 keeps its 30 newest; then everything older than a week goes
        writer.prune_now()
        assert len(api.get("/v1/namespaces/default/events", params={"node": "n1", "limit": 1000}).json()["items"]) == 30
        clock.now += 8 * 24 * 3600
        writer.prune_now()
        assert api.get("/v1/namespaces/default/events").json() == {"items": [], "continue": None}
    finally:
        writer.close()


def test_events_refusals(cloud: Cloud, api: httpx.Client) -> None:
    url = "/v1/namespaces/default/events"
    for params in ({"continue": "garbage"}, {"limit": 0}, {"limit": 1001}, {"bogus": 1}, {"node": "N"}):
        response = api.get(url, params=params)
        assert response.status_code == 400, params
        assert "\n" not in response.json()["message"]
    assert api.get("/v1/namespaces/nope/events").status_code == 404
    issued = api.post("/v1/tokens", json={"namespaces": ["a"], "role": "viewer"}).json()["token"]
    assert api.get(url, headers={"Authorization": f"Bearer {issued}"}).status_code == 403


# -- logs over REST, no broker ------------------------------------------------------------
def test_logs_refusals_without_a_broker(
    make_settings: Callable[..., CloudSettings], clock: Clock,
) -> None:
    with Cloud(make_settings(logs_timeout_seconds=0.3), clock=clock) as cloud, serving(cloud.app) as url:
        cloud.create_node("n1")
        headers = {"Authorization": f"Bearer {admin_token(cloud)}"}
        with httpx.Client(base_url=url, headers=headers, timeout=10) as api:
            assert api.get(LOGS).status_code == 400  # app is required
            assert api.get(LOGS, params={"app": "Web"}).status_code == 400
            assert api.get(LOGS, params={"app": "web", "tail": -1}).status_code == 400
            offline = api.get(LOGS, params={"app": "web"})
            assert offline.status_code == 503 and offline.json()["code"] == "NodeOffline"
            with cloud.store.session() as session:
                set_online(session, "default", "n1", online=True, now=int(clock.now) - 60)
                set_online(session, "default", "n1", online=False, now=int(clock.now) - 30)
            offline = api.get(LOGS, params={"app": "web"}).json()
            assert offline["lastSeen"] == "2027-01-15T07:59:30Z" and "(30 s ago)" in offline["message"]
            with cloud.store.session() as session:
                set_online(session, "default", "n1", online=True, now=int(clock.now))
            started = time.monotonic()
            silent = api.get(LOGS, params={"app": "web"})  # online, but no bridge: no answer
            assert silent.status_code == 504 and time.monotonic() - started < 5
            assert cloud.context.logs.open_streams == 0


# -- against Mosquitto, with a paho client playing the node ---------------------------------
class LoggingNode:
    """Node default/n1 answering log requests: a tail, or a follow that sends a line per renew."""

    def __init__(self, url: str, topics: TopicScheme) -> None:
        self.root = topics.node_root("default", "n1")
        self.ops: list[dict[str, Any]] = []
        subscribed = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"node-{uuid.uuid4().hex[:12]}")
        client.on_message = self.on_message
        client.on_subscribe = lambda *args: subscribed.set()
        parts = urlsplit(url)
        client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
        client.loop_start()
        client.subscribe(f"{self.root}/logs/request", qos=1)
        assert subscribed.wait(10)
        self.client = client
        self.seq: dict[str, int] = {}

    def send(self, stream: str, **chunk: Any) -> None:
        seq = self.seq.get(stream, 0)
        self.seq[stream] = seq + 1
        body = {"streamId": stream, "seq": seq, "lines": [], **chunk}
        self.client.publish(f"{self.root}/logs/data", json.dumps(body), qos=1)

    def on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        request = json.loads(message.payload)
        self.ops.append(request)
        stream = request["streamId"]
        if request["op"] == "open" and request["app"] == "missing":
            self.send(stream, done=True, error={"code": 404, "message": "app 'missing' does not run on this node"})
        elif request["op"] == "open":
            self.send(stream, lines=[f"line {i}" for i in range(request["tail"])])
            if not request["follow"]:
                self.send(stream, lines=["last"], truncated=True, done=True)
        elif request["op"] == "renew":
            self.send(stream, lines=[f"renewed {len(self.ops)}"])

    def status(self, *, online: bool) -> None:
        payload = json.dumps(status_payload(online, timestamp=int(time.time())))
        self.client.publish(f"{self.root}/status", payload, qos=1, retain=True).wait_for_publish(10)

    def close(self) -> None:
        self.client.publish(f"{self.root}/status", b"", qos=1, retain=True).wait_for_publish(10)
        self.client.disconnect()
        self.client.loop_stop()
        release_sockets(self.client)


@pytest.fixture
def relayed(
    make_settings: Callable[..., CloudSettings], mosquitto_url: str, topic_scheme: TopicScheme
) -> Iterator[tuple[httpx.Client, LoggingNode, Cloud]]:
    settings = make_settings(mqtt_url=mosquitto_url, topic_root=topic_scheme.root, logs_renew_seconds=0.2)
    with Cloud(settings) as cloud:
        cloud.create_node("n1")
        assert cloud.start_bridge().wait_ready(10)
        node = LoggingNode(mosquitto_url, topic_scheme)
        try:
            with serving(cloud.app) as url:
                headers = {"Authorization": f"Bearer {admin_token(cloud)}"}
                with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
                    node.status(online=True)
                    deadline = time.monotonic() + 10
                    while not client.get("/v1/namespaces/default/nodes/n1").json()["online"]:
                        assert time.monotonic() < deadline
                        time.sleep(0.02)
                    yield client, node, cloud
        finally:
            node.close()


@pytest.mark.mosquitto
def test_logs_through_a_real_broker(relayed: tuple[httpx.Client, LoggingNode, Cloud]) -> None:
    client, node, cloud = relayed
    body = client.get(LOGS, params={"app": "web", "tail": 3}).json()
    assert body == {"node": "n1", "app": "web", "service": None,
                    "lines": ["line 0", "line 1", "line 2", "last"], "truncated": True}
    missing = client.get(LOGS, params={"app": "missing"})
    assert missing.status_code == 404 and "does not run" in missing.json()["message"]

    events: list[dict[str, Any]] = []
    with client.stream("GET", LOGS, params={"app": "web", "tail": 1, "follow": "true"}) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
            if len(events) == 3:
                break
    assert events[0] == {"lines": ["line 0"]}
    assert all(event["lines"][0].startswith("renewed") for event in events[1:])  # the lease kept up
    deadline = time.monotonic() + 5
    while not node.ops or node.ops[-1]["op"] != "close":  # the client went: the stream is closed
        assert time.monotonic() < deadline, node.ops
        time.sleep(0.02)
    assert cloud.context.logs.open_streams == 0
    opened = [op for op in node.ops if op["op"] == "open" and op["follow"]]
    assert opened[0]["lease"] == pytest.approx(0.6)


def test_the_writer_merges_before_storing_and_bounds_what_waits(cloud: Cloud, api: httpx.Client) -> None:
    writer = EventWriter(cloud.store, now=cloud.context.now, max_pending=3, batch_seconds=0.5)
    writer.start()
    try:
        now = cloud.context.now()
        writer.submit("default", "n1", [crash("n1", "web", now)] * 1000)  # a crash loop: one row
        writer.submit("default", "n1", [crash("n1", f"app{i}", now) for i in range(5)])
        assert writer.dropped == 3  # 3 distinct events wait at most; the repeats merged
        assert writer.wait_idle()
        items = api.get("/v1/namespaces/default/events").json()["items"]
        assert sorted((e["app"], e["count"]) for e in items) == [("app0", 1), ("app1", 1), ("web", 1000)]
        assert writer.stored == 3
    finally:
        writer.close()
