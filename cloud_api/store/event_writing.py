"""``EventWriter``: stores the fleet's events in batches, off the shadow write path.

Why a writer of its own: events arrive from the whole fleet at once when something goes
wrong everywhere (a bad config rolled out), which is exactly when the shadow write path
must not slow down. The bridge's workers only parse an ``events`` message and hand its
events to ``submit`` (a bounded queue: ``max_queued``, 10,000; beyond it events are
dropped and counted); the writer's own thread takes everything waiting, at most every
``batch_seconds`` (0.2 s), and stores it in one transaction: occurrences of one event
merged first, then one ``INSERT ... ON CONFLICT DO UPDATE`` per ``ROWS_PER_STATEMENT`` rows
(count added, last time kept), its own connection, never the shadow writer's.

Retention (``prune``, every ``prune_seconds``, 60 s): rows whose last occurrence is older
than ``retention_seconds`` (7 days) are deleted, and a node keeps at most ``max_per_node``
(1,000) distinct events, its oldest dropped first.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, func, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from cloud_api.store.engine import Store, table_of
from cloud_api.store.models import Event
from schemas.events import AppEvent

log = logging.getLogger(__name__)
_EVENTS = table_of(Event)
ROWS_PER_STATEMENT = 500
RETENTION_SECONDS = 7 * 24 * 3600
MAX_PER_NODE = 1000
MAX_QUEUED = 10_000
BATCH_SECONDS = 0.2
PRUNE_SECONDS = 60.0


@dataclass(frozen=True)
class NodeEvent:
    """An event as received: from which node."""

    namespace: str
    node: str
    event: AppEvent


def event_key(namespace: str, node: str, event: AppEvent) -> str:
    parts = (namespace, node, *event.key)
    return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


def merge(batch: Sequence[NodeEvent]) -> list[dict[str, Any]]:
    """Rows to upsert: occurrences of one event in the batch added up."""
    rows: dict[str, dict[str, Any]] = {}
    for item in batch:
        event, key = item.event, event_key(item.namespace, item.node, item.event)
        row = rows.get(key)
        if row is None:
            rows[key] = {"key": key, "namespace": item.namespace, "node": item.node,
                         "app": event.app, "service": event.service, "kind": event.kind.value,
                         "message": event.message, "count": event.count,
                         "first_time": event.time, "last_time": event.time}
        else:
            row["count"] += event.count
            row["first_time"] = min(row["first_time"], event.time)
            row["last_time"] = max(row["last_time"], event.time)
    return list(rows.values())


def record_events(connection: Connection, batch: Sequence[NodeEvent]) -> int:
    """Upsert a batch (the caller commits); how many distinct events it held."""
    rows = merge(batch)
    postgres = connection.dialect.name == "postgresql"
    insert = postgresql_insert if postgres else sqlite_insert
    latest = func.greatest if postgres else func.max
    for start in range(0, len(rows), ROWS_PER_STATEMENT):
        statement = insert(_EVENTS).values(rows[start:start + ROWS_PER_STATEMENT])
        statement = statement.on_conflict_do_update(
            index_elements=["key"],
            set_={"count": _EVENTS.c.count + statement.excluded.count,
                  "last_time": latest(_EVENTS.c.last_time, statement.excluded.last_time)},
        )
        connection.execute(statement)
    return len(rows)


def prune(
    connection: Connection, *, now: int, retention_seconds: int = RETENTION_SECONDS,
    max_per_node: int = MAX_PER_NODE, nodes: Sequence[tuple[str, str]] = (),
) -> int:
    """Delete events past retention, and the oldest of ``nodes`` beyond ``max_per_node``."""
    deleted = connection.execute(
        delete(_EVENTS).where(_EVENTS.c.last_time < now - retention_seconds)).rowcount or 0
    for namespace, node in nodes:
        keep = (select(_EVENTS.c.id)
                .where(_EVENTS.c.namespace == namespace, _EVENTS.c.node == node)
                .order_by(_EVENTS.c.last_time.desc(), _EVENTS.c.id.desc())
                .limit(max_per_node))
        deleted += connection.execute(
            delete(_EVENTS).where(_EVENTS.c.namespace == namespace, _EVENTS.c.node == node,
                                  _EVENTS.c.id.not_in(keep.scalar_subquery()))).rowcount or 0
    return deleted



class EventWriter:
    """A thread that stores what ``submit`` hands it, in batches. ``close`` flushes."""

    def __init__(
        self,
        store: Store,
        *,
        now: Callable[[], int],
        retention_seconds: int = RETENTION_SECONDS,
        max_per_node: int = MAX_PER_NODE,
        max_queued: int = MAX_QUEUED,
        batch_seconds: float = BATCH_SECONDS,
        prune_seconds: float = PRUNE_SECONDS,
    ) -> None:
        self.store, self._now = store, now
        self.retention_seconds, self.max_per_node = retention_seconds, max_per_node
        self.batch_seconds, self.prune_seconds = batch_seconds, prune_seconds
        self._queue: queue.Queue[NodeEvent | None] = queue.Queue(maxsize=max_queued)
        self.dropped = 0
        self.stored = 0
        self._touched: set[tuple[str, str]] = set()
        self._next_prune = time.monotonic() + prune_seconds
        self._thread = threading.Thread(target=self._run, name="tether-events", daemon=True)
        self._idle = threading.Condition()
        self._queued = 0  # events queued so far
        self._handled = 0  # of those, stored (or lost to a database error)

    def start(self) -> None:
        self._thread.start()

    def submit(self, namespace: str, node: str, events: Sequence[AppEvent]) -> None:
        """Queue a node's events (the bridge worker's part: no I/O). Never raises."""
        for event in events:
            try:
                with self._idle:
                    self._queue.put_nowait(NodeEvent(namespace, node, event))
                    self._queued += 1
            except queue.Full:
                self.dropped += 1
        if self.dropped and self.dropped % 1000 == 1:
            log.warning("the event queue is full: %d events dropped so far", self.dropped)

    def close(self, timeout: float = 5.0) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout)

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until everything submitted so far is stored (tests)."""
        deadline = time.monotonic() + timeout
        with self._idle:
            target = self._queued
            while self._handled < target:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    # -- the writer's thread -------------------------------------------------------------
    def _run(self) -> None:
        stop = False
        while not stop:
            try:
                first = self._queue.get(timeout=self.prune_seconds)
            except queue.Empty:
                self.prune_now()
                continue
            if first is not None:
                time.sleep(self.batch_seconds)  # let a burst gather into one transaction
            batch = [] if first is None else [first]
            stop = first is None
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            if batch:
                self._store(batch)
            if time.monotonic() >= self._next_prune:
                self.prune_now()
            with self._idle:
                self._handled += len(batch)
                self._idle.notify_all()

    def _store(self, batch: list[NodeEvent]) -> None:
        try:
            with self.store.connect() as connection:
                self.stored += record_events(connection, batch)
                connection.commit()
            self._touched.update((item.namespace, item.node) for item in batch)
        except Exception:  # a database hiccup loses this batch, never the writer
            log.exception("could not store %d events", len(batch))

    def prune_now(self) -> None:
        """Apply the retention (the writer's thread does, every ``prune_seconds``)."""
        self._next_prune = time.monotonic() + self.prune_seconds
        nodes, self._touched = sorted(self._touched), set()
        try:
            with self.store.connect() as connection:
                deleted = prune(connection, now=self._now(), nodes=nodes,
                                retention_seconds=self.retention_seconds,
                                max_per_node=self.max_per_node)
                connection.commit()
        except Exception:
            log.exception("could not prune events")
            return
        if deleted:
            log.info("pruned %d events (retention %d s, %d per node)", deleted,
                     self.retention_seconds, self.max_per_node)
