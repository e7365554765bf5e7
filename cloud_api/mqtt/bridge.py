"""The MQTT bridge: a paho-mqtt client that feeds the shadow topics to worker threads, and
a second one (``cloud_api.mqtt.outbound``) that publishes the replies.

Paho's callbacks run on its network thread, where any slow work would stall every node's
traffic, so they only put messages on a queue. ``bridge_workers`` threads take them off, as
many as are waiting at a time, and call the handler (``ShadowServer.handle_batch``) with the
batch: one transaction and one commit serve them all (group commit,
``store/shadow_writing``). A message goes to the worker chosen by a hash of its
``(namespace, node)``: one node's requests are answered in the order it sent them,
while different nodes are served in parallel. One worker is the default: with the GIL
and SQLite's one writer, two workers split the batches and contend for both (10 nodes
updating at 10,000: 1,752/s with two, 2,358/s with one; on PostgreSQL 1,192-1,325/s
and 1,464-1,511/s); a remote database whose round trips dominate may want more. A
request finding its queue full (``bridge_queue_size``) is answered with 429 at once; a
``status`` is always queued.

The client speaks MQTT 3.1.1 at QoS 1, so it works with amqtt and Mosquitto alike; with a
share group it subscribes with ``$share/GROUP/...`` so several replicas split the traffic.
It reconnects with backoff by itself, retries refused subscriptions with backoff too
(``problem`` says why it is not serving, for ``/healthz``), and sets TCP_NODELAY on its
socket (Nagle's algorithm was measured adding ~20 ms per hop to request/reply traffic).
Sessions are clean: a node re-fetches its shadow and re-sends its reported state on every
reconnect (DESIGN §4).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt.client as mqtt

from cloud_api.errors import Busy
from cloud_api.metrics import BRIDGE_ERRORS, Metrics
from cloud_api.mqtt.functions import result_filter
from cloud_api.mqtt.log_relay import node_output_filters
from cloud_api.mqtt.outbound import Outbound
from cloud_api.mqtt.paho_reading import bridge_client
from cloud_api.settings import CloudSettings, mqtt_endpoint
from schemas.errors import Rejection
from schemas.topics import Suffix

log = logging.getLogger(__name__)
_paho_log = logging.getLogger(f"{__name__}.paho")
# Paho logs an error from its loop when a deliberate disconnect closes the socket under it.
_paho_log.addFilter(lambda record: not record.getMessage().startswith("Client is not connected"))

Handler = Callable[[Sequence[tuple[str, bytes]]], None]  # a batch, in arrival order
_Queued = tuple[str, bytes, float | None]  # topic, payload, when it stops being worth answering
_REQUESTS = frozenset({Suffix.SHADOW_GET, Suffix.SHADOW_UPDATE, Suffix.RESOURCES_GET})
Refuser = Callable[[str, bytes, Rejection], None]
KEEPALIVE_SECONDS = 30
RESUBSCRIBE_SECONDS = (1.0, 30.0)  # refused subscriptions are retried, doubling in between


def default_client_id() -> str:
    """Unique per process and at most 23 characters (the MQTT 3.1.1 guaranteed length)."""
    return f"tether-cloud-{os.urandom(5).hex()}"


class Bridge:
    """The cloud's MQTT client; a ``Publisher`` for replies and REST-caused updates."""

    def __init__(self, settings: CloudSettings, *, password: str, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.topics = settings.topics
        self._filters = self.topics.cloud_filters(share_group=settings.share_group)
        self._filters.append(result_filter(self.topics))  # unshared: see cloud_api.mqtt.functions
        self._filters += node_output_filters(self.topics, share_group=settings.share_group)
        self._host, self._port, tls = mqtt_endpoint(settings.mqtt_url)
        self._ready = threading.Event()
        self.subscriptions = 0  # times the bridge got its subscriptions: once per (re)connect
        self._stopping = threading.Event()
        # unbounded: _on_message keeps requests to bridge_queue_size (statuses pass, see there)
        self._queues: list[queue.Queue[_Queued | None]] = [
            queue.Queue() for _ in range(settings.bridge_workers)
        ]
        self._workers: list[threading.Thread] = []
        self._handle: Handler | None = None
        self._refuse: Refuser | None = None
        self._problem: str | None = None  # why the subscribing side is not serving
        self.refused: list[str] = []  # the filters the broker refused last time
        self._resubscribe_delay = RESUBSCRIBE_SECONDS[0]
        self._resubscribe: threading.Timer | None = None
        self.client = bridge_client(
            settings, client_id=settings.mqtt_client_id or default_client_id(),
            password=password, tls=tls, logger=_paho_log,
        )
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.outbound = Outbound(settings, host=self._host, port=self._port, tls=tls,
                                 password=password, metrics=metrics)

    # -- lifecycle ---------------------------------------------------------------------
    def start(self, handle: Handler, *, refuse: Refuser) -> None:
        """Start the workers and connect (in the background, retrying until it succeeds)."""
        self._handle, self._refuse = handle, refuse
        for index, work in enumerate(self._queues):
            worker = threading.Thread(
                target=self._work, args=(work,), name=f"tether-bridge-{index}", daemon=True
            )
            worker.start()
            self._workers.append(worker)
        self.outbound.start()
        self.client.connect_async(self._host, self._port, keepalive=KEEPALIVE_SECONDS)
        self.client.loop_start()
        settings = self.settings
        log.info("bridge connecting to %s as %s", settings.mqtt_url, settings.mqtt_username)

    def wait_ready(self, timeout: float) -> bool:
        """Wait until connected and subscribed, and the publishing connection is up; False
        on timeout."""
        deadline = time.monotonic() + timeout
        return self._ready.wait(timeout) and self.outbound.wait_ready(
            max(0.0, deadline - time.monotonic()))

    @property
    def problem(self) -> str | None:
        """Why the bridge is not serving, for ``/healthz``: its subscribing connection, or else
        its publishing one (``cloud_api.mqtt.outbound``)."""
        return self._problem or self.outbound.problem

    def backlog(self) -> int:
        """Node messages waiting in the workers' queues (what matching paces itself on)."""
        return sum(work.qsize() for work in self._queues)

    @property
    def connected(self) -> bool:
        return self._ready.is_set() and self.outbound.connected

    def stop(self, timeout: float = 5.0) -> None:
        """Answer what is queued, then disconnect. New messages are dropped meanwhile."""
        self._stopping.set()
        if self._resubscribe is not None:
            self._resubscribe.cancel()
        for work in self._queues:
            work.put(None)  # after what is queued: None means stop
        for worker in self._workers:
            worker.join(timeout)
            if worker.is_alive():
                log.warning("a bridge worker did not drain its queue in %ss; leaving it", timeout)
        self.client.disconnect()
        self.client.loop_stop()
        self.outbound.stop()
        self._ready.clear()

    # -- Publisher ---------------------------------------------------------------------
    def publish(self, topic: str, payload: bytes, *, retain: bool = False, qos: int = 1) -> None:
        """On the publishing connection (``cloud_api.mqtt.outbound``: why it is a second one)."""
        self.outbound.publish(topic, payload, retain=retain, qos=qos)

    # -- paho callbacks: only bookkeeping and enqueueing ---------------------------------
    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        if reason.is_failure:
            self._problem = f"the broker refused the bridge's connection: {reason}"
            log.error("broker %s refused the bridge: %s", self.settings.mqtt_url, reason)
            return
        log.info("bridge connected to %s, subscribing to %s", self.settings.mqtt_url, self._filters)
        self._subscribe()

    def _subscribe(self) -> None:
        self._resubscribe = None
        if not self._stopping.is_set():
            # QoS 0 on the broker -> bridge hop: the session is clean, so QoS 1 would redeliver
            # nothing after a lost connection anyway, and its PUBACKs cost the one network
            # thread a quarter of its time; nodes publish at QoS 1 and re-send what goes
            # unanswered (DESIGN §10)
            self.client.subscribe([(topic_filter, 0) for topic_filter in self._filters])

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self._problem = f"cannot reach the broker at {self.settings.mqtt_url}"
        log.warning("bridge cannot reach the broker at %s; retrying", self.settings.mqtt_url)

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any
    ) -> None:
        failed = [f"{topic_filter} ({reason})" for topic_filter, reason in zip(self._filters, reasons)
                  if reason.is_failure]
        self.refused = failed
        if failed:
            delay = self._resubscribe_delay
            self._resubscribe_delay = min(2 * delay, RESUBSCRIBE_SECONDS[1])
            self._problem = f"the broker refused the bridge's subscriptions: {', '.join(failed)}"
            log.error("%s; retrying in %gs", self._problem, delay)
            if not self._stopping.is_set():
                self._resubscribe = threading.Timer(delay, self._subscribe)
                self._resubscribe.daemon = True
                self._resubscribe.start()
            return
        self._problem = None
        self._resubscribe_delay = RESUBSCRIBE_SECONDS[0]
        self.subscriptions += 1
        self._ready.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        self._ready.clear()
        if not self._stopping.is_set():
            self._problem = f"lost the broker ({reason}); reconnecting"
            log.warning("bridge lost %s (%s); reconnecting", self.settings.mqtt_url, reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            topic, payload = message.topic, bytes(message.payload)
        except UnicodeDecodeError:  # a topic that is not UTF-8: no broker should pass it on
            self.metrics.inc(BRIDGE_ERRORS, kind="topic")
            return
        if self._stopping.is_set():
            return
        parsed = self.topics.parse(topic)
        key = f"{parsed.namespace}/{parsed.node}" if parsed else topic
        work = self._queues[zlib.crc32(key.encode("utf-8", "surrogatepass")) % len(self._queues)]
        # a status has no reply to carry a 429, and dropping it loses a node's liveness: it
        # is always queued (it is small); requests beyond the bound are refused at once
        if work.qsize() < self.settings.bridge_queue_size or (
            parsed is not None and parsed.suffix == Suffix.STATUS
        ):
            stale_after = self._stale_after if parsed is not None and parsed.suffix in _REQUESTS else None
            work.put_nowait((topic, payload, stale_after))
        else:
            self.metrics.inc(BRIDGE_ERRORS, kind="overload")
            if self._refuse is not None:
                busy = Busy("the cloud is overloaded; retry shortly", retry_after=1.0)
                self._refuse(topic, payload, busy)

    # -- workers -----------------------------------------------------------------------
    @property
    def _stale_after(self) -> float | None:
        """When a request queued now stops being worth answering (None: never)."""
        seconds = self.settings.bridge_stale_seconds
        return time.monotonic() + seconds if seconds > 0 else None

    def _work(self, work: queue.Queue[_Queued | None]) -> None:
        """Take every message waiting (up to ``bridge_batch_size``) and answer them as one
        batch: one transaction, one commit for all (``ShadowServer.handle_batch``). A worker
        that is idle answers a lone message at once; under load, batches grow by themselves.

        A request that waited past ``bridge_stale_seconds`` (1.5 s) is dropped unanswered:
        its node gives up at 2 s and asks again (DESIGN §10), and a late answer costs as much
        as a useful one and makes the node ask again once more (an accepted it cannot
        account for sends it back to shadow/get). Answering those is how an overloaded cloud
        used to collapse under its own retries (a 10,000-node rollout had 336,605 re-sent
        updates in the queue). Statuses and
        function results are never dropped."""
        limit = self.settings.bridge_batch_size
        stop = False
        while not stop:
            first = work.get()
            if first is None:
                break
            waiting = [first]
            while len(waiting) < limit:
                try:
                    item = work.get_nowait()
                except queue.Empty:
                    break
                if item is None:  # answer what came before the stop, then stop
                    stop = True
                    break
                waiting.append(item)
            now = time.monotonic()
            batch = [(topic, payload) for topic, payload, stale_after in waiting
                     if stale_after is None or now < stale_after]
            if len(batch) < len(waiting):
                self.metrics.inc(BRIDGE_ERRORS, kind="stale", amount=len(waiting) - len(batch))
            if not batch:
                continue
            try:
                assert self._handle is not None
                self._handle(batch)
            except Exception:  # the handler never raises; if it does, the worker must live
                self.metrics.inc(BRIDGE_ERRORS, kind="internal")
                log.exception("bridge worker failed on a batch of %d", len(batch))
