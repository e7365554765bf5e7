"""A node as the conformance suite plays it: a paho client with the node's own identity.

It connects as ``tether-edge.NS.NODE`` with the credentials the cloud issued (where the
broker takes them), leaves a retained ``online: false`` will, says ``online: true`` on
connect, and optionally says it again every ``heartbeat`` seconds, as an idle edge agent
does. Replies land in an inbox the test reads with a deadline.
"""

from __future__ import annotations

import json
import queue
import socket
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from launcher.brokers import RunningBroker
from schemas.names import node_client_id
from schemas.topics import Suffix, TopicScheme
from tests.paho_clients import release_sockets

TIMEOUT = 10.0
NAMESPACE = "default"


class SuiteNode:
    def __init__(
        self,
        broker: RunningBroker,
        topics: TopicScheme,
        name: str,
        *,
        credentials: tuple[str, str | None] | None = None,
        heartbeat: float | None = None,
    ) -> None:
        self.topics, self.name, self.credentials = topics, name, credentials
        self.inbox: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.refused: list[str] = []
        subscribed = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=node_client_id(NAMESPACE, name),
                             protocol=mqtt.MQTTv311)
        username, password = broker.login(*(credentials or (None, None)))
        if username is not None:
            client.username_pw_set(username, password)
        client.on_message = lambda c, u, message: self.inbox.put((message.topic, bytes(message.payload)))

        def on_subscribe(c: Any, u: Any, mid: int, reasons: Any, props: Any) -> None:
            self.refused += [str(reason) for reason in reasons if reason.is_failure]
            subscribed.set()

        client.on_subscribe = on_subscribe
        client.on_socket_open = lambda c, u, sock: sock.setsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
        )
        client.will_set(self.topic(Suffix.STATUS), b'{"online": false}', qos=1, retain=True)
        parts = urlsplit(broker.url)
        client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
        client.loop_start()
        self.client = client
        root = topics.node_root(NAMESPACE, name)
        requests = ("shadow/get", "shadow/update", "resources/get")
        client.subscribe([(f"{root}/{request}/+", 1) for request in requests])
        assert subscribed.wait(TIMEOUT), f"node {name}: no SUBACK"
        self.send(Suffix.STATUS, {"online": True, "timestamp": int(time.time())}, retain=True)
        self._stop = threading.Event()
        if heartbeat is not None:
            threading.Thread(target=self._beat, args=(heartbeat,), daemon=True).start()

    def serve_functions(self, answer: Callable[[Any], Any]) -> None:
        """Answer every function invocation with ``answer(payload)``, as a runtime would."""
        root = self.topics.node_root(NAMESPACE, self.name)

        def on_invoke(client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
            body = json.loads(message.payload)
            result = {"invokeId": body["invokeId"], "result": answer(body["payload"])}
            client.publish(message.topic.rsplit("/", 1)[0] + "/result", json.dumps(result), qos=1)

        self.client.message_callback_add(f"{root}/functions/+/+/invoke", on_invoke)
        done = threading.Event()
        self.client.on_subscribe = lambda *args: done.set()
        self.client.subscribe(f"{root}/functions/+/+/invoke", 1)
        assert done.wait(TIMEOUT), f"node {self.name}: no SUBACK for invocations"

    def topic(self, suffix: Suffix) -> str:
        return self.topics.topic(NAMESPACE, self.name, suffix)

    def send(self, suffix: Suffix, payload: Any, *, retain: bool = False) -> None:
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.client.publish(self.topic(suffix), raw, qos=1, retain=retain).wait_for_publish(TIMEOUT)

    def report(self, reported: dict[str, Any]) -> None:
        self.send(Suffix.SHADOW_UPDATE, {"state": {"reported": reported}})

    def _beat(self, period: float) -> None:
        while not self._stop.wait(period):
            try:
                self.send(Suffix.STATUS, {"online": True, "timestamp": int(time.time())}, retain=True)
            except (RuntimeError, ValueError):  # disconnected meanwhile
                return

    def next(self, accept: Callable[[str, Any], bool], *, timeout: float = TIMEOUT) -> tuple[str, Any]:
        """The next (topic, decoded payload) that ``accept`` takes, skipping others."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                topic, raw = self.inbox.get(timeout=left)
            except queue.Empty:
                break
            if raw and accept(topic, json.loads(raw)):
                return topic, json.loads(raw)
        raise AssertionError(f"node {self.name}: no awaited message within {timeout}s")

    def expect(self, suffix: Suffix, *, timeout: float = TIMEOUT) -> Any:
        return self.next(lambda topic, body: topic == self.topic(suffix), timeout=timeout)[1]

    def request(self, suffix: Suffix, payload: dict[str, Any]) -> tuple[str, Any]:
        """Send a request; ("accepted"|"rejected", reply), matched by its clientToken."""
        token = payload["clientToken"]
        self.send(suffix, payload)
        replies = {f"{self.topic(suffix)}/accepted", f"{self.topic(suffix)}/rejected"}
        topic, reply = self.next(lambda t, body: t in replies and body.get("clientToken") == token)
        return topic.rsplit("/", 1)[1], reply

    def die(self) -> None:
        """Drop the connection without a DISCONNECT: the broker publishes the will."""
        self._stop.set()
        self.client.loop_stop()
        release_sockets(self.client)  # closes the connection: no DISCONNECT is sent

    def close(self) -> None:
        """Leave cleanly, clearing the retained status (no will)."""
        self._stop.set()
        if self.client.is_connected():
            try:
                self.send(Suffix.STATUS, b"", retain=True)
            except (RuntimeError, ValueError):
                pass
            self.client.disconnect()
        self.client.loop_stop()
        release_sockets(self.client)


def connect_reason(broker: RunningBroker, name: str, credentials: tuple[str, str | None]) -> str:
    """Connect once as node ``name``; the CONNACK's reason ("Success" or why not)."""
    answered: queue.Queue[str] = queue.Queue()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=node_client_id(NAMESPACE, name),
                         protocol=mqtt.MQTTv311)
    client.username_pw_set(*broker.login(*credentials))
    client.on_connect = lambda c, u, flags, reason, props: answered.put(str(reason))
    parts = urlsplit(broker.url)
    try:
        client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
    except OSError as exc:
        return f"connection failed: {exc}"
    client.loop_start()
    try:
        return answered.get(timeout=TIMEOUT)
    except queue.Empty:
        return "no CONNACK"
    finally:
        client.disconnect()
        client.loop_stop()
        release_sockets(client)
