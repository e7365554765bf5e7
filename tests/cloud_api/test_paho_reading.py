"""The bridge's paho clients: what they change of paho's reading, dispatching and writing."""

from __future__ import annotations

import gc
import socket
import threading
import time
import types
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from cloud_api.mqtt.paho_reading import BufferedClient, WritingClient
from tests.paho_clients import release_sockets


@pytest.fixture
def client() -> Iterator[BufferedClient]:
    made = BufferedClient(CallbackAPIVersion.VERSION2, client_id="t", protocol=mqtt.MQTTv311)
    yield made


def _message(topic: bytes) -> mqtt.MQTTMessage:
    message = mqtt.MQTTMessage(topic=topic)
    message.payload = b"{}"
    return message


def test_messages_reach_on_message_without_leaving_cycles(client: BufferedClient) -> None:
    seen: list[str] = []
    client.on_message = lambda c, userdata, message: seen.append(message.topic)
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for index in range(100):
            client._handle_on_message(_message(f"tether/ns/n{index}/shadow/update".encode()))
        gc.collect()
        closures = [o for o in gc.garbage if isinstance(o, types.FunctionType)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert len(seen) == 100
    assert closures == []  # paho's matcher left one recursive closure per message


def test_per_filter_callbacks_still_take_their_messages(client: BufferedClient) -> None:
    general: list[str] = []
    filtered: list[str] = []

    def on_filtered(c: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        filtered.append(message.topic)

    client.on_message = lambda c, userdata, message: general.append(message.topic)
    client.message_callback_add("tether/+/+/status", on_filtered)
    client._handle_on_message(_message(b"tether/ns/a/status"))
    client._handle_on_message(_message(b"tether/ns/a/shadow/get"))
    assert filtered == ["tether/ns/a/status"]
    assert general == ["tether/ns/a/shadow/get"]
    client.message_callback_remove("tether/+/+/status")
    client._handle_on_message(_message(b"tether/ns/a/status"))
    assert general == ["tether/ns/a/shadow/get", "tether/ns/a/status"]


# -- WritingClient: publishing threads write their packets themselves ---------------------
def _connected(url: str, client: mqtt.Client) -> mqtt.Client:
    parts = urlsplit(url)
    connected = threading.Event()
    client.on_connect = lambda c, userdata, flags, reason, props: connected.set()
    client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
    client.loop_start()
    assert connected.wait(10), "no CONNACK from the test broker"
    return client


@pytest.fixture
def subscriber(mosquitto_url: str) -> Iterator[tuple[str, list[tuple[str, bytes]], threading.Event]]:
    """A plain paho client subscribed to a topic tree of its own: (root, what it received,
    set when it got the message ``ROOT/end``)."""
    root = f"tether-test/{uuid.uuid4().hex}"
    received: list[tuple[str, bytes]] = []
    ended = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)

    def on_message(c: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        received.append((message.topic, bytes(message.payload)))
        if message.topic == f"{root}/end":
            ended.set()

    client.on_message = on_message
    _connected(mosquitto_url, client)
    subscribed = threading.Event()
    client.on_subscribe = lambda c, userdata, mid, reasons, props: subscribed.set()
    client.subscribe(f"{root}/#", qos=1)
    assert subscribed.wait(10)
    yield root, received, ended
    client.disconnect()
    client.loop_stop()
    release_sockets(client)


@pytest.fixture
def writer(mosquitto_url: str) -> Iterator[WritingClient]:
    client = WritingClient(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.max_inflight_messages_set(1024)
    client.max_queued_messages_set(100_000)
    yield _connected(mosquitto_url, client)  # type: ignore[misc]
    client.disconnect()
    client.loop_stop()
    release_sockets(client)


def _senders(client: mqtt.Client) -> list[str]:
    """Records the name of each thread that writes to ``client``'s socket."""
    names: list[str] = []
    send = client._sock_send

    def recording(buf: Any) -> int:
        names.append(threading.current_thread().name)
        return send(buf)

    client._sock_send = recording  # type: ignore[method-assign]
    return names


def _by_qos(payloads: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    """Payloads ending in an even number (sent at QoS 0), then odd ones (QoS 1), each in
    arrival order: MQTT orders messages only within a QoS level (Mosquitto holds QoS 1
    ones back while its window to the subscriber is full, and QoS 0 ones pass)."""
    even = [payload for payload in payloads if int(payload.rsplit(b":", 1)[-1]) % 2 == 0]
    return even, [payload for payload in payloads if payload not in even]


def test_a_publishing_thread_writes_its_packet_itself(writer: WritingClient, subscriber: Any) -> None:
    root, received, ended = subscriber
    senders = _senders(writer)

    def publish() -> None:
        for index in range(50):
            writer.publish(f"{root}/m", str(index).encode(), qos=index % 2)
        writer.publish(f"{root}/end", b"", qos=1)

    thread = threading.Thread(target=publish, name="a-bridge-worker")
    thread.start()
    thread.join(10)
    assert ended.wait(10)
    assert _by_qos([payload for topic, payload in received if topic == f"{root}/m"]) == _by_qos(
        [str(index).encode() for index in range(50)])
    assert senders and set(senders) == {"a-bridge-worker"}  # paho's thread wrote none of them


def test_over_tls_the_network_thread_writes(writer: WritingClient, subscriber: Any) -> None:
    """OpenSSL must not read and write one connection from two threads: with TLS (here only
    flagged, the socket is plain) every packet goes through paho's network thread."""
    root, _, ended = subscriber
    writer._ssl = True
    senders = _senders(writer)
    thread = threading.Thread(target=lambda: writer.publish(f"{root}/end", b"", qos=1),
                              name="a-bridge-worker")
    thread.start()
    thread.join(10)
    assert ended.wait(10)
    assert senders and "a-bridge-worker" not in senders


def test_threads_publishing_at_once_never_interleave_their_packets(
    writer: WritingClient, subscriber: Any
) -> None:
    """Four threads publish large messages at once, beyond what the socket's buffer takes:
    writes come back short and wait for the network thread, yet every message arrives
    whole and in each thread's order (interleaved bytes would garble the stream and the
    broker would drop the connection)."""
    root, received, ended = subscriber
    body = bytes(range(256)) * 256  # 64 KiB

    def publish(thread: int) -> None:
        for index in range(40):
            writer.publish(f"{root}/t{thread}", body + f"{thread}:{index}".encode(), qos=index % 2)

    threads = [threading.Thread(target=publish, args=(thread,)) for thread in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    writer.publish(f"{root}/end", b"", qos=1)
    assert ended.wait(30)
    for thread in range(4):
        payloads = [payload for topic, payload in received if topic == f"{root}/t{thread}"]
        assert all(payload.startswith(body) for payload in payloads)
        assert _by_qos([payload[len(body):] for payload in payloads]) == _by_qos(
            [f"{thread}:{index}".encode() for index in range(40)])


def test_packets_queued_across_a_lost_connection_do_not_reach_the_next_one(
    writer: WritingClient, subscriber: Any
) -> None:
    """The connection drops while a thread publishes: paho reconnects, and what comes after
    arrives whole (a packet half-written to the old socket must not be finished on the
    new one)."""
    root, received, ended = subscriber
    reconnected = threading.Event()
    writer.on_connect = lambda c, userdata, flags, reason, props: reconnected.set()
    body = b"x" * 65536
    stop = threading.Event()

    def publish() -> None:
        for _ in range(500):  # at most 32 MiB waiting in paho's queue
            if stop.is_set():
                return
            writer.publish(f"{root}/flood", body, qos=0)
            time.sleep(0.001)

    thread = threading.Thread(target=publish)
    thread.start()
    try:
        time.sleep(0.2)
        writer._sock.shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]
        assert reconnected.wait(15), "paho did not reconnect"
    finally:
        stop.set()
        thread.join(10)
    writer.publish(f"{root}/after", b"whole", qos=1)
    writer.publish(f"{root}/end", b"", qos=1)
    assert ended.wait(15)
    assert (f"{root}/after", b"whole") in received
    assert all(payload == body for topic, payload in received if topic == f"{root}/flood")


def test_packets_other_than_publish_are_written_by_the_network_thread(writer: WritingClient) -> None:
    subscribed = threading.Event()
    writer.on_subscribe = lambda c, userdata, mid, reasons, props: subscribed.set()
    senders = _senders(writer)
    thread = threading.Thread(target=lambda: writer.subscribe(f"tether-test/{uuid.uuid4().hex}"),
                              name="a-bridge-worker")
    thread.start()
    thread.join(10)
    assert subscribed.wait(10)
    assert senders and "a-bridge-worker" not in senders
