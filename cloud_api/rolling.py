"""The background loop that advances rollouts and keeps shadow history bounded.

Why it exists: a rollout moves when nodes report, not when someone calls the API, so
something must look at it: every ``rollout_poll_seconds`` this thread takes one step of
every active rollout (``services.rollout_waves.advance``). Every replica runs one; the row
lock of each rollout makes only one of them move it at a time (apps, and the agent's
own version: ``services.agent_rollout``), and since all of a
rollout's state is in the database, a restarted cloud simply goes on. When a step owes
matching (a wave admitted, a rollback), the ``Rematcher`` is told at once.

It also prunes the shadow history every ``history_prune_seconds``
(``store.shadow_history.prune``), off every write path.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from cloud_api.services import agent_rollout  # noqa: F401  (registers the agent's Subject)
from cloud_api.services.rollout_waves import advance
from cloud_api.settings import CloudSettings
from cloud_api.store import shadow_history
from cloud_api.store.engine import Store

log = logging.getLogger(__name__)


class RolloutDriver:
    """One per cloud process; ``start`` it, ``close`` it."""

    def __init__(
        self, store: Store, settings: CloudSettings, *, now: Callable[[], int],
        matching_owed: Callable[[], None],
    ) -> None:
        self.store, self.settings, self.now = store, settings, now
        self.matching_owed = matching_owed
        self._stop = threading.Event()
        self._pruned_to = 0
        self._next_prune = time.monotonic() + settings.history_prune_seconds
        self._thread = threading.Thread(target=self._loop, name="tether-rollouts", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.rollout_poll_seconds):
            try:
                self.run_once()
            except Exception:  # the database is down, say: the rows stay; look again later
                log.exception("advancing rollouts failed; retrying")

    def run_once(self) -> None:
        for moved in advance(self.store, now=self.now()):
            if moved.assigned:
                self.matching_owed()
            log.info("rollout of %s %s/%s: %s", moved.kind, moved.namespace, moved.name,
                     moved.message)
        if time.monotonic() >= self._next_prune:
            self._next_prune = time.monotonic() + self.settings.history_prune_seconds
            with self.store.writing() as connection:
                deleted, self._pruned_to = shadow_history.prune(
                    connection, keep=self.settings.history_keep, since_id=self._pruned_to)
            if deleted:
                log.info("pruned %d shadow history row(s)", deleted)
