"""Proving that a share group really delivers: a probe message through ``$share/``.

Some brokers (NATS 2.9, RabbitMQ 3.10) grant the SUBACK for ``$share/GROUP/filter`` but
store the filter literally, so a cloud started with ``--share-group`` there is connected,
subscribed, and receives nothing: every node waits forever and nothing says why. So once
the bridge is subscribed, the cloud publishes a probe on a topic its shared filters match,
``ROOT/_probe/ID/shadow/get`` (``_`` keeps it out of every real namespace), and waits for
it. With several replicas the broker may hand the probe to another one: a replica that
gets someone else's probe answers on ``ROOT/_probe/ID/functions/_probe/_probe/result``,
which every replica receives unshared. No probe or answer within the timeout: the share
group does not work here, and ``problem`` says so (``/healthz``, the log, and
``tether cloud serve``, which refuses to start).

The probe runs again every time the bridge gets its subscriptions anew (each reconnect):
a broker restarted, upgraded or failed over to a node without shared subscriptions is
caught too, and a later probe that gets through clears an earlier ``problem``.

Probe traffic never reaches the shadow server: ``watching`` takes it out of each batch.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence

from cloud_api.mqtt.bridge import Handler
from schemas.topics import TopicScheme

log = logging.getLogger(__name__)
PROBE_SEGMENT = "_probe"
Publish = Callable[[str, bytes], None]


class ShareProbe:
    """One probe of a share group, started once the bridge is subscribed."""

    def __init__(
        self, topics: TopicScheme, group: str, *, publish: Publish, timeout: float = 5.0
    ) -> None:
        self.group, self.timeout = group, timeout
        self._publish = publish
        self.id = os.urandom(6).hex()
        self._prefix = f"{topics.root}/{PROBE_SEGMENT}/"
        self._arrived = threading.Event()
        self.done = threading.Event()
        self._closed = threading.Event()
        self.problem: str | None = None

    def _request_topic(self, probe_id: str) -> str:
        return f"{self._prefix}{probe_id}/shadow/get"

    def _answer_topic(self, probe_id: str) -> str:
        return f"{self._prefix}{probe_id}/functions/{PROBE_SEGMENT}/{PROBE_SEGMENT}/result"

    # -- bridge worker threads ----------------------------------------------------------
    def watching(self, handle: Handler) -> Handler:
        """``handle`` for everything but probe traffic, which is answered here."""
        def watched(batch: Sequence[tuple[str, bytes]]) -> None:
            rest = [(topic, payload) for topic, payload in batch if not self._took(topic)]
            if rest:
                handle(rest)

        return watched

    def _took(self, topic: str) -> bool:
        if not topic.startswith(self._prefix):
            return False
        probe_id, _, suffix = topic[len(self._prefix):].partition("/")
        if probe_id == self.id:
            self._arrived.set()
        elif suffix == "shadow/get":  # another replica's probe: tell it, unshared
            self._publish(self._answer_topic(probe_id), b"{}")
        return True

    # -- its own thread -----------------------------------------------------------------
    def run(
        self, wait_ready: Callable[[float], bool], subscriptions: Callable[[], int] = lambda: 0
    ) -> None:
        """Probe each time the bridge is subscribed anew (``subscriptions`` counts those),
        until closed; ``done`` is set at the first verdict."""
        probed: int | None = None
        while not self._closed.is_set():
            if not wait_ready(1.0):
                continue
            current = subscriptions()
            if current == probed:
                self._closed.wait(0.2)
                continue
            probed = current
            self.probe()

    def probe(self) -> None:
        """One probe: a few sends within the timeout, in case the broker activates the
        subscription a moment after its SUBACK."""
        self._arrived.clear()
        attempts = 5
        for _ in range(attempts):
            self._publish(self._request_topic(self.id), b"{}")
            if self._arrived.wait(self.timeout / attempts):
                if self.problem is not None:
                    log.warning("share group %r delivers again: probe received", self.group)
                log.info("share group %r delivers: probe received", self.group)
                self.problem = None
                self.done.set()
                return
            if self._closed.is_set():
                return
        self.problem = (
            f"the broker accepted the subscriptions of share group {self.group!r} but "
            f"delivered nothing through them in {self.timeout:g}s: it does not support "
            "MQTT shared subscriptions ($share/); run without --share-group "
            "(one replica) or on a broker that has them (Mosquitto, EMQX)"
        )
        log.error("%s", self.problem)
        self.done.set()

    def start(
        self, wait_ready: Callable[[float], bool], subscriptions: Callable[[], int] = lambda: 0
    ) -> None:
        threading.Thread(target=self.run, args=(wait_ready, subscriptions),
                         name="tether-share-probe", daemon=True).start()

    def verdict(self, timeout: float) -> str | None:
        """Wait up to ``timeout`` for the probe's outcome; its ``problem``, or None when it
        worked or has not finished (the bridge is not connected yet)."""
        self.done.wait(timeout)
        return self.problem

    def close(self) -> None:
        self._closed.set()
        self.done.set()
