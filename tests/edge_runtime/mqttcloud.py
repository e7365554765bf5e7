"""A minimal cloud on a real broker, and a TCP proxy to break the node's connection.

``MqttCloud`` answers ``shadow/get`` and ``shadow/update`` of every node under a topic
root with ``MemoryCloud`` (the real schemas algebra), publishes deltas when a test
changes desired, and records every node's retained ``status``. ``TcpProxy`` sits between
a node and the broker on a port of its own (port 0) so a test can cut the connection
abruptly (RST, no DISCONNECT: the broker fires the will) and refuse reconnects for a while.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from schemas.payloads import decode_json, encode_json
from schemas.shadow import JSONObject, ShadowDocument
from schemas.topics import Suffix, TopicScheme
from tests.edge_runtime.fakes import MemoryCloud
from tests.paho_clients import release_sockets

Node = tuple[str, str]


class MqttCloud:
    def __init__(self, url: str, topics: TopicScheme) -> None:
        self.topics = topics
        self.nodes: dict[Node, MemoryCloud] = {}
        self.statuses: dict[Node, list[JSONObject]] = {}
        self._changed = threading.Condition()
        parts = urlsplit(url)
        client_id = f"cloud-{uuid.uuid4().hex[:8]}"
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                   protocol=mqtt.MQTTv311)
        self._client.on_socket_open = lambda c, u, sock: sock.setsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._client.on_message = self._on_message
        self._client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
        self._client.loop_start()
        served = (Suffix.SHADOW_GET, Suffix.SHADOW_UPDATE, Suffix.STATUS)
        filters = [f"{topics.root}/+/+/{s.value}" for s in served]
        subscribed = threading.Event()
        self._client.on_subscribe = lambda *args: subscribed.set()
        self._client.subscribe([(f, 1) for f in filters])
        if not subscribed.wait(5):
            raise RuntimeError("the test cloud could not subscribe")

    def node(self, namespace: str, name: str) -> MemoryCloud:
        with self._changed:
            return self.nodes.setdefault((namespace, name), MemoryCloud())

    def document(self, namespace: str, name: str) -> ShadowDocument:
        return self.node(namespace, name).document

    def set_desired(self, namespace: str, name: str, patch: JSONObject) -> None:
        for suffix, payload in self.node(namespace, name).set_desired(patch):
            self._publish(namespace, name, suffix, payload)

    def wait_for(self, predicate: Callable[[], bool], *, timeout: float = 5.0,
                 what: str = "the condition") -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
                self._changed.wait(min(left, 0.05))

    def last_status(self, namespace: str, name: str) -> JSONObject | None:
        seen = self.statuses.get((namespace, name))
        return seen[-1] if seen else None

    def close(self) -> None:
        for namespace, name in list(self.statuses):  # leave no retained message behind
            topic = self.topics.topic(namespace, name, Suffix.STATUS)
            self._client.publish(topic, b"", qos=1, retain=True)
        self._client.disconnect()
        self._client.loop_stop()
        release_sockets(self._client)

    def _publish(self, namespace: str, name: str, suffix: Suffix, payload: JSONObject) -> None:
        topic = self.topics.topic(namespace, name, suffix)
        self._client.publish(topic, encode_json(payload), qos=1)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        parsed = self.topics.parse(message.topic)
        if parsed is None or not message.payload:
            return
        key = (parsed.namespace, parsed.node)
        payload = decode_json(message.payload, max_bytes=1 << 20)
        if parsed.suffix is Suffix.STATUS:
            with self._changed:
                self.statuses.setdefault(key, []).append(payload)
                self._changed.notify_all()
            return
        for suffix, reply in self.node(*key).answer(parsed.suffix, payload):
            self._publish(*key, suffix, reply)
        with self._changed:
            self._changed.notify_all()


class TcpProxy:
    """Forwards 127.0.0.1:<port 0> to the broker; ``down()`` cuts and refuses connections."""

    def __init__(self, target_url: str) -> None:
        parts = urlsplit(target_url)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 1883)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self.accepting = True
        self.attempts = 0
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def down(self) -> None:
        self.accepting = False
        self.cut()

    def up(self) -> None:
        self.accepting = True

    def cut(self) -> None:
        with self._lock:
            sockets, self._open = self._open, []
        for sock in sockets:
            _reset(sock)

    def close(self) -> None:
        self.down()
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.attempts += 1
            if not self.accepting:
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self._target, timeout=2)
            except OSError:
                _reset(client)
                continue
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.settimeout(None)
            with self._lock:
                self._open += [client, upstream]
            threading.Thread(target=_pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=_pump, args=(upstream, client), daemon=True).start()


def _reset(sock: socket.socket) -> None:
    """Kill a connection without an MQTT DISCONNECT, as when a node loses power.

    ``shutdown`` first: a bare ``close`` does not wake a thread blocked in ``recv``, so
    the kernel would keep the connection open until the peer spoke.
    """
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    for sock in (source, sink):
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()


def wipe_session(url: str, client_id: str) -> None:
    """Discard a node's persistent session on the broker (a clean_session connect does)."""
    parts = urlsplit(url)
    wipe = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    wipe.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
    wipe.loop_start()
    wipe.disconnect()
    wipe.loop_stop()
    release_sockets(wipe)
