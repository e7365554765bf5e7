"""Test clients for the broker: a recording paho client, and raw MQTT 3.1.1 packets.

paho is what the edge and the cloud use, so behaviour is checked with it. Raw packets
are for what paho will not do on purpose: drop the TCP connection without DISCONNECT,
withhold a PUBACK, stay silent past the keep-alive, send malformed bytes.
"""

from __future__ import annotations

import queue
import socket
import threading
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from tests.paho_clients import release_sockets

WAIT = 5.0  # seconds to wait for something that should happen
QUIET = 0.3  # seconds of silence that count as "nothing arrived"


class Probe:
    """A paho (VERSION2 callbacks, MQTT 3.1.1) client that records what it receives."""

    def __init__(
        self,
        port: int,
        username: str | None,
        password: str | None,
        *,
        client_id: str | None = None,
        clean_session: bool = True,
    ) -> None:
        self.port = port
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"probe-{uuid.uuid4().hex[:8]}",
            clean_session=clean_session,
            protocol=mqtt.MQTTv311,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.reconnect_delay_set(min_delay=30, max_delay=60)  # no retry storms in tests
        self.connack: ReasonCode | None = None
        self.session_present = False
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self._answered = threading.Event()
        self._subacks: dict[int, list[ReasonCode]] = {}
        self._suback_event = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda _c, _u, msg: self.messages.put(msg)
        self.client.on_subscribe = self._on_subscribe

    def _on_connect(
        self, _c: object, _u: object, flags: mqtt.ConnectFlags, rc: ReasonCode, _p: object
    ) -> None:
        self.connack, self.session_present = rc, flags.session_present
        if rc.is_failure:
            self.client.disconnect()  # stop paho's network thread from retrying
        self._answered.set()

    def _on_subscribe(self, _c: object, _u: object, mid: int, rcs: list[ReasonCode], _p: object) -> None:
        with self._suback_event:
            self._subacks[mid] = rcs
            self._suback_event.notify_all()

    def connect(self) -> ReasonCode:
        self.client.connect("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        assert self._answered.wait(WAIT), "no CONNACK"
        assert self.connack is not None
        return self.connack

    def subscribe(self, topic_filter: str, qos: int = 1) -> ReasonCode:
        _, mid = self.client.subscribe(topic_filter, qos=qos)
        with self._suback_event:
            assert self._suback_event.wait_for(lambda: mid in self._subacks, WAIT), "no SUBACK"
            return self._subacks[mid][0]

    def publish(self, topic: str, payload: bytes = b"{}", *, qos: int = 1, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(WAIT)

    def expect(self, timeout: float = WAIT) -> mqtt.MQTTMessage:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("expected a message, none arrived") from None

    def expect_topic(self, topic: str) -> mqtt.MQTTMessage:
        """The next message; it must be on ``topic``."""
        message = self.expect()
        assert message.topic == topic, f"got {message.topic!r}, expected {topic!r}"
        return message

    def expect_nothing(self, within: float = QUIET) -> None:
        try:
            message = self.messages.get(timeout=within)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected message on {message.topic!r}: {message.payload[:80]!r}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        release_sockets(self.client)


# -- raw MQTT 3.1.1 ------------------------------------------------------------------------
CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK = 1, 2, 3, 4, 8, 9


def _string(value: str | bytes) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return len(data).to_bytes(2, "big") + data


def _remaining_length(length: int) -> bytes:
    out = bytearray()
    while True:
        byte, length = length % 128, length // 128
        out.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(out)


def packet(kind: int, body: bytes, flags: int = 0) -> bytes:
    return bytes([kind << 4 | flags]) + _remaining_length(len(body)) + body


def connect_packet(
    client_id: str,
    username: str | bytes | None = None,
    password: str | None = None,
    *,
    will: tuple[str, bytes] | None = None,
    will_retain: bool = True,
    clean: bool = True,
    keepalive: int = 60,
) -> bytes:
    flags = 0x02 if clean else 0
    flags |= (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    payload = _string(client_id)
    if will is not None:
        flags |= 0x04 | (1 << 3) | (0x20 if will_retain else 0)  # will, QoS 1
        payload += _string(will[0]) + _string(will[1])
    if username is not None:
        payload += _string(username)
    if password is not None:
        payload += _string(password)
    body = _string("MQTT") + bytes([4, flags]) + keepalive.to_bytes(2, "big") + payload
    return packet(CONNECT, body)


def subscribe_packet(packet_id: int, topic_filter: str, qos: int = 1) -> bytes:
    return packet(SUBSCRIBE, packet_id.to_bytes(2, "big") + _string(topic_filter) + bytes([qos]), flags=0x02)


def puback_packet(packet_id: int) -> bytes:
    return packet(PUBACK, packet_id.to_bytes(2, "big"))


def read_packet(sock: socket.socket) -> tuple[int, int, bytes]:
    """(type, flags, body) of the next packet; raises ConnectionError at EOF."""
    first = _read_exactly(sock, 1)[0]
    length, shift = 0, 0
    while True:
        byte = _read_exactly(sock, 1)[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return first >> 4, first & 0x0F, _read_exactly(sock, length)


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed by the broker")
        data += chunk
    return data


def parse_publish(flags: int, body: bytes) -> tuple[str, int | None, bytes]:
    """(topic, packet id or None, payload) of a PUBLISH body."""
    topic_length = int.from_bytes(body[:2], "big")
    topic, rest = body[2 : 2 + topic_length].decode(), body[2 + topic_length :]
    if (flags >> 1) & 0x03:
        return topic, int.from_bytes(rest[:2], "big"), rest[2:]
    return topic, None, rest


def raw_connect(port: int, connect: bytes) -> tuple[socket.socket, int]:
    """Open a TCP connection, send a CONNECT; return the socket and the CONNACK code."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    sock.sendall(connect)
    kind, _, body = read_packet(sock)
    assert kind == CONNACK
    return sock, body[1]


def closed_by_peer(sock: socket.socket, within: float = WAIT) -> bool:
    """True if the broker closes ``sock`` within ``within`` seconds (data is discarded)."""
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except OSError:
        return True
    return True
