"""Liveness that does not depend on retained messages: a node recorded online that the
cloud has not heard from for ``liveness_timeout_seconds`` is marked offline.

A node's ``online`` flag follows its ``status`` messages (``serving``): ``online: true``
when it connects and on every heartbeat of an idle agent, ``online: false`` from its will.
That alone fails in one case: a node that dies while no cloud listens leaves its will as
a *retained* message, and a broker that delivers retained messages only to exact-topic
subscriptions (RabbitMQ) never hands it to the cloud's ``+/+/status``, so the node would
be shown online forever.

So every message from a node is a sign of life. Bridge workers only note it in memory
(``heard``); a sweeper thread, once per period, writes what was heard as ``last_seen`` (one
statement for all, off the request path) and then marks offline every node recorded
online whose ``last_seen`` is older than the timeout (2.5 heartbeats by default; agents
beat every 30 s), so a silent node is offline within 3 heartbeats. The database holds the truth, so replicas sharing the traffic agree and
a restarted cloud resumes. Silence is counted only while the bridge is connected: for the
first timeout after (re)connecting, nothing is swept, as nodes may not have spoken yet.

A node swept offline by mistake says ``online: true`` again at its next heartbeat or
reconnect, which ``serving`` records as usual. ``last_seen`` is written only to nodes
still online, so a will handled meanwhile keeps the last word.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence

from sqlalchemy import bindparam

from cloud_api.mqtt.bridge import Handler
from cloud_api.store.engine import Store, table_of
from cloud_api.store.models import Node
from schemas.topics import Suffix, TopicScheme

log = logging.getLogger(__name__)
NODES = table_of(Node)
Key = tuple[str, str]  # (namespace, node)


class Liveness:
    """Notes when each node was heard; ``sweep`` records it and marks the silent offline."""

    def __init__(
        self,
        store: Store,
        topics: TopicScheme,
        *,
        timeout: float,
        connected: Callable[[], bool],
        now: Callable[[], int],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store, self.topics, self.timeout = store, topics, timeout
        self._connected, self._now, self._monotonic = connected, now, monotonic
        self._heard: dict[Key, int] = {}
        self._lock = threading.Lock()
        self._connected_since: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- hearing (bridge worker threads) ------------------------------------------------
    def watching(self, handle: Handler) -> Handler:
        """``handle``, preceded by noting every node heard in the batch."""
        def watched(batch: Sequence[tuple[str, bytes]]) -> None:
            for topic, payload in batch:
                try:
                    self.heard(topic, payload)
                except Exception:  # noting must never cost the batch its answers
                    log.exception("liveness could not note a message on %r", topic)
            handle(batch)

        return watched

    def heard(self, topic: str, payload: bytes) -> None:
        parsed = self.topics.parse(topic)
        if parsed is None or parsed.suffix == Suffix.FUNCTION_INVOKE:
            return
        key = (parsed.namespace, parsed.node)
        with self._lock:
            if parsed.suffix == Suffix.STATUS and not _says_online(payload):
                self._heard.pop(key, None)  # a will, or a cleared status: no sign of life
            else:
                self._heard[key] = self._now()

    # -- sweeping (its own thread) ------------------------------------------------------
    def sweep(self) -> list[Key]:
        """Record what was heard; mark offline the nodes silent for over the timeout.
        Returns the nodes marked offline."""
        if not self._connected():
            self._connected_since = None
            return []
        if self._connected_since is None:
            self._connected_since = self._monotonic()
        with self._lock:
            heard, self._heard = self._heard, {}
        now = self._now()
        with self.store.writing() as connection:
            if heard:
                connection.execute(
                    NODES.update()
                    .where(NODES.c.namespace == bindparam("k_namespace"),
                           NODES.c.name == bindparam("k_name"), NODES.c.online.is_(True))
                    .values(last_seen=bindparam("k_seen")),
                    [{"k_namespace": namespace, "k_name": name, "k_seen": seen}
                     for (namespace, name), seen in heard.items()],
                )
            silent: list[Key] = []
            if self._monotonic() - self._connected_since >= self.timeout:
                stale = NODES.c.online.is_(True) & (
                    NODES.c.last_seen.is_(None) | (NODES.c.last_seen < now - self.timeout)
                )
                silent = [(row.namespace, row.name) for row in connection.execute(
                    NODES.select().with_only_columns(NODES.c.namespace, NODES.c.name).where(stale)
                )]
                if silent:
                    connection.execute(NODES.update().where(stale).values(online=False))
        for namespace, name in silent:
            log.info("node %s/%s silent for over %ss: offline", namespace, name, self.timeout)
        return silent

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="tether-liveness", daemon=True)
        self._thread.start()

    @property
    def period(self) -> float:
        """Seconds between sweeps: a twentieth of the timeout (at most 5 s), so a node is
        marked offline within ``timeout`` + ``period`` of falling silent (of the bridge's
        connect, for one that died while no cloud listened): with the default 2.5
        heartbeats, within 3."""
        return max(0.05, min(self.timeout / 20, 5.0))

    def _run(self) -> None:
        period = self.period
        while not self._stop.wait(period):
            try:
                self.sweep()
            except Exception:  # the database may be away a while: try again next period
                log.exception("liveness sweep failed")

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)


def _says_online(payload: bytes) -> bool:
    try:
        body = json.loads(payload)
    except (ValueError, RecursionError):  # garbage is no sign of life (serving answers it)
        return False
    return isinstance(body, dict) and body.get("online") is True
