"""The small interface between the cloud's logic and MQTT: something that publishes.

The shadow logic (``serving.py``) and the REST routes only ever publish; what they
receive comes to them as ``(topic, payload)`` calls. So the real MQTT bridge, a publisher
that drops everything (REST without a broker) and an in-memory recorder (tests, like
httpx's ``MockTransport``) are interchangeable, and the logic is tested without sockets.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any, Protocol


class Publisher(Protocol):
    """Sends one message (QoS 1 unless told). Must be safe to call from several threads.

    QoS 0 is for what the receiver gets again by asking again: the replies to a node's own
    requests (it re-sends what goes unanswered) and ``shadow/update/documents``. What a
    node cannot ask for (a delta, a change of its desired state) goes at QoS 1."""

    def publish(self, topic: str, payload: bytes, *, retain: bool = False, qos: int = 1) -> None: ...


class NullPublisher:
    """Drops every message: the REST API running with no bridge."""

    def publish(self, topic: str, payload: bytes, *, retain: bool = False, qos: int = 1) -> None:
        return None


@dataclass(frozen=True)
class Published:
    topic: str
    payload: bytes
    retain: bool = False
    qos: int = 1

    def json(self) -> Any:
        return json.loads(self.payload)


class MemoryPublisher:
    """Records what is published, in order, for tests and diagnostics."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: list[Published] = []

    def publish(self, topic: str, payload: bytes, *, retain: bool = False, qos: int = 1) -> None:
        with self._lock:
            self._messages.append(Published(topic, bytes(payload), retain, qos))

    @property
    def messages(self) -> list[Published]:
        with self._lock:
            return list(self._messages)

    def on(self, topic: str) -> list[Any]:
        """The decoded JSON payloads published on ``topic``, oldest first."""
        return [message.json() for message in self.messages if message.topic == topic]

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()
