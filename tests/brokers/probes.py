"""What a broker really does, asked with plain paho clients, to hold each broker's declared
capabilities (``launcher.brokers``) to the truth: a declaration that is wrong either way
fails, so an upgraded broker that gains a capability is noticed too."""

from __future__ import annotations

import os
import queue
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from launcher.brokers import RunningBroker
from tests.paho_clients import release_sockets

WAIT = 1.0  # a local broker delivers in milliseconds; nothing by then means nothing


class Client:
    def __init__(self, broker: RunningBroker, credentials: tuple[str, str]) -> None:
        self.inbox: queue.Queue[str] = queue.Queue()
        self.subacks: queue.Queue[list[Any]] = queue.Queue()
        connected: queue.Queue[Any] = queue.Queue()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{os.urandom(4).hex()}",
                             protocol=mqtt.MQTTv311)
        client.username_pw_set(*broker.login(*credentials))
        client.on_connect = lambda c, u, f, reason, p: connected.put(reason)
        client.on_message = lambda c, u, message: self.inbox.put(message.topic)
        client.on_subscribe = lambda c, u, mid, reasons, p: self.subacks.put(list(reasons))
        parts = urlsplit(broker.url)
        client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
        client.loop_start()
        self.client = client
        assert not connected.get(timeout=10).is_failure, "the probe could not connect"

    def subscribe(self, topic_filter: str) -> bool:
        """Whether the broker granted it."""
        self.client.subscribe(topic_filter, 1)
        return not any(reason.is_failure for reason in self.subacks.get(timeout=10))

    def publish(self, topic: str, *, retain: bool = False) -> None:
        self.client.publish(topic, b"probe", qos=1, retain=retain).wait_for_publish(10)

    def received(self, topic: str) -> bool:
        try:
            while True:
                if self.inbox.get(timeout=WAIT) == topic:
                    return True
        except queue.Empty:
            return False

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        release_sockets(self.client)


def delivers_retained_on_wildcard(broker: RunningBroker, credentials: tuple[str, str],
                                  root: str) -> bool:
    topic = f"{root}/probe/r{os.urandom(3).hex()}/status"
    publisher, subscriber = Client(broker, credentials), Client(broker, credentials)
    try:
        publisher.publish(topic, retain=True)
        assert subscriber.subscribe(f"{root}/probe/+/status")
        return subscriber.received(topic)
    finally:
        publisher.client.publish(topic, b"", qos=1, retain=True).wait_for_publish(10)
        publisher.close()
        subscriber.close()


def delivers_through_share_groups(broker: RunningBroker, credentials: tuple[str, str],
                                  root: str) -> bool:
    topic = f"{root}/probe/s{os.urandom(3).hex()}/shadow/get"
    publisher, subscriber = Client(broker, credentials), Client(broker, credentials)
    try:
        if not subscriber.subscribe(f"$share/probe/{root}/probe/+/shadow/get"):
            return False
        publisher.publish(topic)
        return subscriber.received(topic)
    finally:
        publisher.close()
        subscriber.close()
