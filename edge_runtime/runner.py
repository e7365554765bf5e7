"""The one thread that drives ``ShadowSync``: link events, new reports and timers, in order.

``ShadowSync`` is not thread-safe on purpose (its logic stays simple and testable), so
everything that touches it goes through this runner's queue: the MQTT network thread
posts ``Connected``/``Disconnected``/``Message``, the reconciler or collectors post
``Report`` from wherever they run. Between events the runner sleeps exactly until the
sync's next deadline (debounce, retry, heartbeat), so a report leaves within the debounce
and an idle agent wakes once per heartbeat.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from edge_runtime.syncing import ShadowSync
from edge_runtime.transport import Connected, Disconnected, LinkEvent, Message
from schemas.shadow import JSONObject

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Report:
    """A new full reported state from the reconciler or a collector."""

    reported: JSONObject


@dataclass(frozen=True)
class _Stop:
    pass


Event = LinkEvent | Report | _Stop


class SyncRunner:
    """Owns the sync thread; ``post`` is the only way in and is safe from any thread."""

    def __init__(self, sync: ShadowSync, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._sync, self._clock = sync, clock
        self._queue: queue.Queue[Event] = queue.Queue()
        self._thread: threading.Thread | None = None

    def post(self, event: Event) -> None:
        self._queue.put(event)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="tether-edge-sync", daemon=True)
        self._thread.start()

    def stop(self, *, timeout: float = 5.0) -> None:
        """Finish the queued events, let the sync say goodbye (offline status), then end."""
        if self._thread is None:
            return
        self.post(_Stop())
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("the sync thread did not stop within %g s", timeout)

    def _run(self) -> None:
        while True:
            deadline = self._sync.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - self._clock())
            try:
                event: Event | None = self._queue.get(timeout=timeout)
            except queue.Empty:
                event = None
            try:
                if isinstance(event, _Stop):
                    self._sync.shutdown()
                    return
                if event is not None:
                    self._apply(event)
                self._sync.tick()
            except Exception:  # one bad event must not end the node's sync
                log.exception("the sync failed on %r", event)

    def _apply(self, event: Event) -> None:
        if isinstance(event, Message):
            self._sync.handle(event.suffix, event.payload)
        elif isinstance(event, Report):
            self._sync.report(event.reported)
        elif isinstance(event, Connected):
            self._sync.connected()
        elif isinstance(event, Disconnected):
            log.info("disconnected from the broker (%s)", event.reason)
            self._sync.disconnected()
