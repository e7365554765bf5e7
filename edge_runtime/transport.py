"""The small interface between the sync logic and MQTT, so the logic runs without a broker.

``ShadowSync`` publishes through a ``Transport`` (``MqttLink`` in production, a
recording fake in tests) and is fed ``LinkEvent``s: ``Connected``, ``Disconnected`` and
``Message``. The topics a node subscribes to are listed here because both sides need
them: the link subscribes, the sync expects their messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from schemas.shadow import JSONObject
from schemas.topics import Suffix

QOS = 1
# What a node subscribes to under its own root ("resources/get/+" covers both replies).
SUBSCRIBED = (
    Suffix.SHADOW_GET_ACCEPTED,
    Suffix.SHADOW_GET_REJECTED,
    Suffix.SHADOW_UPDATE_ACCEPTED,
    Suffix.SHADOW_UPDATE_REJECTED,
    Suffix.SHADOW_UPDATE_DELTA,
)
RESOURCES_FILTER = "resources/get/+"
INVOKE_FILTER = "functions/+/+/invoke"  # function invocations, handed to the FunctionInvoker
LOGS_FILTER = "logs/request"  # log stream requests, handed to the LogServer


class Transport(Protocol):
    """Publishes one JSON message under this node's root, QoS 1; drops it when offline."""

    def publish(self, suffix: Suffix, payload: JSONObject, *, retain: bool = False) -> None: ...


@dataclass(frozen=True)
class Connected:
    """The broker accepted the connection; the subscriptions are already on their way."""


@dataclass(frozen=True)
class Disconnected:
    reason: str


@dataclass(frozen=True)
class Message:
    """A message under this node's root, with its topic parsed to a suffix."""

    suffix: Suffix
    payload: bytes


LinkEvent = Connected | Disconnected | Message
