"""``EventRecorder``: deduplicates this node's events and publishes them in bounded batches.

Why a recorder between the engine and MQTT: a crash loop makes the same event again and
again, and a node must not flood the broker or the cloud with it. Occurrences of one
``(app, service, kind, message)`` waiting to be sent are merged into one event with a
``count`` (as Kubernetes does), and a flush thread publishes what waits at most once per
``flush_seconds`` (1 s), at most ``MAX_EVENTS_PER_MESSAGE`` (100) events per message, on
the node's own ``events`` topic. At most ``max_pending`` (1,000) distinct events wait;
more are counted as dropped and logged. While the node is offline events wait (bounded the
same way) and go out once it is connected again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

from edge_runtime.backends.base import ObservedApp
from edge_runtime.events.deriving import derive_events
from schemas.events import MAX_EVENTS_PER_MESSAGE, AppEvent
from schemas.payloads import encode_json

log = logging.getLogger(__name__)
FLUSH_SECONDS = 1.0
MAX_PENDING = 1000


class EventRecorder:
    """Merges events by key and publishes them from its own thread."""

    def __init__(
        self,
        *,
        publish: Callable[[bytes], None],
        connected: Callable[[], bool],
        flush_seconds: float = FLUSH_SECONDS,
        max_pending: int = MAX_PENDING,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._publish, self._connected, self._clock = publish, connected, clock
        self.flush_seconds, self.max_pending = flush_seconds, max_pending
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str, str, str], AppEvent] = {}
        self.dropped = 0
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # -- input -------------------------------------------------------------------------
    def observed(self, previous: Mapping[str, ObservedApp], current: Mapping[str, ObservedApp]) -> None:
        """The engine's hook: record what changed between two observations. Never raises."""
        try:
            self.record(derive_events(previous, current, now=int(self._clock())))
        except Exception:  # events must never cost the engine a pass
            log.exception("could not derive events")

    def record(self, events: list[AppEvent]) -> None:
        with self._lock:
            for event in events:
                waiting = self._pending.get(event.key)
                if waiting is not None:
                    self._pending[event.key] = AppEvent(
                        max(waiting.time, event.time), event.app, event.service, event.kind,
                        event.message, waiting.count + event.count)
                elif len(self._pending) < self.max_pending:
                    self._pending[event.key] = event
                else:
                    self.dropped += 1
                    log.warning("dropped an event (%d waiting already): %s %s/%s %s",
                                len(self._pending), event.kind, event.app, event.service,
                                event.message)

    @property
    def pending(self) -> list[AppEvent]:
        with self._lock:
            return list(self._pending.values())

    # -- output ------------------------------------------------------------------------
    def flush(self) -> int:
        """Publish up to one message of waiting events (if connected); how many it held."""
        if not self._connected():
            return 0
        with self._lock:
            keys = list(self._pending)[:MAX_EVENTS_PER_MESSAGE]
            batch = [self._pending.pop(key) for key in keys]
        if not batch:
            return 0
        try:
            self._publish(encode_json({"events": [event.wire() for event in batch]}))
        except Exception:
            log.exception("could not publish %d events; keeping them", len(batch))
            self.record(batch)
            return 0
        return len(batch)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="tether-edge-events", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(self.flush_seconds + 2.0)
            self._thread = None
        self.flush()  # what is left, while the link is still up

    def _run(self) -> None:
        while not self._stopping.wait(self.flush_seconds):
            self.flush()
