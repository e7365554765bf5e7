"""The background worker that does the matching writes owe (``services.matching``).

Why it exists: recomputing the desired apps of 10,000 nodes and writing their updates
takes seconds; a REST write must not wait for it. Writes store a ``PendingMatch`` row and
call ``notify``; this thread wakes at once, does every match owed (``settle_owed``) and
goes back to sleep. It also looks every ``poll_seconds`` without being told, so a match
owed by a replica that died before doing it, or stored by another replica, is done here.
Two replicas doing the same match is harmless: the second finds nothing left to change.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from cloud_api.mqtt.transport import Publisher
from cloud_api.services.matching import settle_owed
from cloud_api.settings import CloudSettings
from cloud_api.store.engine import Store

log = logging.getLogger(__name__)


class Rematcher:
    """One per cloud process; ``start`` it, ``notify`` it after a write, ``close`` it."""

    def __init__(
        self,
        store: Store,
        settings: CloudSettings,
        *,
        publisher: Callable[[], Publisher],
        now: Callable[[], int],
        backlog: Callable[[], int] = lambda: 0,
    ) -> None:
        self.store = store
        self.settings = settings
        self.publisher = publisher  # asked at each run: the bridge, once it is started
        self.now = now
        self.backlog = backlog  # node messages waiting in the bridge's queues
        self._changed = threading.Condition()
        self._owed = True  # look once at start: a match may be owed from before
        self._running = False
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="tether-rematch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def notify(self) -> None:
        """A write has made matching owed: do it now."""
        with self._changed:
            self._owed = True
            self._changed.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing told is left to do; False on timeout (tests, shutdown)."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._owed and not self._running, timeout)

    def close(self, timeout: float = 10.0) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _pace(self) -> None:
        """Between two batches of a fan-out: wait while the bridge has more than
        ``rematch_backlog`` node messages waiting (at most ``rematch_pace_seconds``).

        Why: every node of a batch answers its delta at once (resources/get, then reports);
        fanning out 10,000 deltas faster than the bridge can serve their answers made
        answers late, nodes ask again, and the cloud collapsed under the re-sent requests.
        Waiting for the backlog to drain lets the fan-out go as fast as the answers are
        served, and no faster."""
        deadline = time.monotonic() + self.settings.rematch_pace_seconds
        while self.backlog() > self.settings.rematch_backlog and time.monotonic() < deadline:
            with self._changed:
                if self._closed:
                    return
            time.sleep(0.02)

    def _loop(self) -> None:
        poll = self.settings.rematch_poll_seconds
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._owed or self._closed, timeout=poll)
                if self._closed:
                    return
                self._owed, self._running = False, True
            try:
                self.run_once()
            except Exception:  # the database is down, say: the rows stay; try again later
                log.exception("matching failed; retrying in %ss", poll)
            finally:
                with self._changed:
                    self._running = False
                    self._changed.notify_all()

    def run_once(self) -> int:
        """Do every match owed now; the number of nodes updated."""
        settings = self.settings
        updated = settle_owed(self.store, publisher=self.publisher(), topics=settings.topics,
                              limits=settings.limits, now=self.now(), pace=self._pace)
        if updated:
            log.info("matching updated the desired apps of %d node(s)", updated)
        return updated
