"""The bridge's second MQTT connection: the one the cloud publishes on.

Replies a node gets again by asking again go at QoS 0 (``transport.Publisher``): the
PUBACKs of QoS 1 replies were measured taking a third of the cloud's CPU at 10,000 nodes,
paho reading each 4-byte acknowledgement in three system calls.

Why a connection of its own: on one connection, the broker's PUBACKs for the cloud's
replies come back on the socket that also carries every node's requests. When 10,000
nodes connect at once, the reader falls behind (2.9 MB were seen waiting unread), the
acknowledgements wait behind thousands of requests, paho's window of unacknowledged
publishes stays full, its queue fills, and replies were dropped: 412,884 "message queue
full" in one 10,000-node run. On this connection only the cloud's own publishes and their
acknowledgements travel, so the window drains as fast as the broker answers.

The thread that publishes writes its packet to the socket itself
(``paho_reading.WritingClient``, plain TCP): a reply leaves when its batch is answered,
not when paho's network thread next gets the GIL.

And when it is full all the same, ``publish`` waits (up to ``PUBLISH_WAIT_SECONDS``)
instead of dropping: the bridge worker that publishes is held back, its queue fills, and
new requests are answered 429, which nodes retry. A reply is dropped only after that
wait, or when the client is stopping, and then it is counted and logged (at most once a
second).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from cloud_api.metrics import BRIDGE_ERRORS, BRIDGE_MESSAGES, Metrics
from cloud_api.mqtt.paho_reading import bridge_client
from cloud_api.settings import CloudSettings

log = logging.getLogger(__name__)
_paho_log = logging.getLogger(f"{__name__}.paho")
_paho_log.addFilter(lambda record: not record.getMessage().startswith("Client is not connected"))

KEEPALIVE_SECONDS = 30
MAX_IN_FLIGHT = 1024  # publishes awaiting their PUBACK
MAX_QUEUED = 100_000  # beyond the window, and while disconnected
PUBLISH_WAIT_SECONDS = 10.0
_QUEUED = (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN)  # NO_CONN: kept for later


def outbound_client_id(configured: str | None) -> str:
    """``CONFIGURED.out``, or unique per process in at most 23 characters."""
    return f"{configured}.out" if configured else f"tether-pub-{os.urandom(6).hex()}"


class Outbound:
    """Publishes at QoS 1 on a connection of its own; thread-safe."""

    def __init__(
        self, settings: CloudSettings, *, host: str, port: int, tls: bool, password: str,
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self._host, self._port = host, port
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._last_warning = 0.0
        self.problem: str | None = None  # why this connection is down, for /healthz
        self.client = bridge_client(
            settings, client_id=outbound_client_id(settings.mqtt_client_id), password=password,
            tls=tls, logger=_paho_log, writing=True,
        )
        self.client.max_inflight_messages_set(MAX_IN_FLIGHT)
        self.client.max_queued_messages_set(MAX_QUEUED)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect

    def start(self) -> None:
        self.client.connect_async(self._host, self._port, keepalive=KEEPALIVE_SECONDS)
        self.client.loop_start()

    def wait_ready(self, timeout: float) -> bool:
        return self._ready.wait(timeout)

    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    def stop(self) -> None:
        self._stopping.set()
        self.client.disconnect()
        self.client.loop_stop()
        self._ready.clear()

    def publish(self, topic: str, payload: bytes, *, retain: bool = False, qos: int = 1) -> None:
        """Queue one message; wait while paho's queue is full (see the docstring)."""
        deadline = time.monotonic() + PUBLISH_WAIT_SECONDS
        while True:
            info = self.client.publish(topic, payload, qos=qos, retain=retain)
            if info.rc in _QUEUED:
                self.metrics.inc(BRIDGE_MESSAGES, direction="out")
                return
            full = info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE
            if not full or self._stopping.is_set() or time.monotonic() >= deadline:
                break
            time.sleep(0.002)
        self.metrics.inc(BRIDGE_ERRORS, kind="publish")
        now = time.monotonic()
        if now - self._last_warning >= 1.0:  # a flood of these must not become a flood of logs
            self._last_warning = now
            log.warning("could not publish to %s: %s (counted in %s)", topic,
                        mqtt.error_string(info.rc), BRIDGE_ERRORS)

    # -- paho callbacks ------------------------------------------------------------------
    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        if reason.is_failure:
            self.problem = f"the broker refused the bridge's publishing connection: {reason}"
            log.error("broker %s refused the bridge's publishing connection: %s",
                      self.settings.mqtt_url, reason)
            return
        self.problem = None
        self._ready.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        self._ready.clear()
        if not self._stopping.is_set():
            self.problem = f"lost the broker's publishing connection ({reason}); reconnecting"
            log.warning("bridge lost its publishing connection to %s (%s); reconnecting",
                        self.settings.mqtt_url, reason)
