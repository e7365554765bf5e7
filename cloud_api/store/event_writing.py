"""``EventWriter``: stores the fleet's events in batches, off the shadow write path.

Why a writer of its own: events arrive from the whole fleet at once when something goes
wrong everywhere (a bad config rolled out), which is exactly when the shadow write path
must not slow down. The bridge's workers only parse an ``events`` message and hand its
events to ``submit``, which merges them in memory with those waiting (a repeat adds to the
count of its event: a crash loop across the fleet costs no more rows than one crash per
node); at most ``max_pending`` (20,000) distinct events wait, more are dropped and counted.
The writer's own thread takes everything waiting, at most every ``batch_seconds`` (0.2 s),
and stores it in one transaction: one ``INSERT ... ON CONFLICT DO UPDATE`` per
``ROWS_PER_STATEMENT`` rows (count added, last time kept), on its own connection, never
the shadow writer's.

Retention (``prune``, every ``prune_seconds``, 60 s): rows whose last occurrence is older
than ``retention_seconds`` (7 days) are deleted, and a node keeps at most ``max_per_node``
(1,000) distinct events, its oldest dropped first.
"""

from __future__ import annotations

import hashlib
import logging
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
MAX_PENDING = 20_000
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


def merge_into(rows: dict[str, dict[str, Any]], item: NodeEvent, *, limit: int | None = None) -> bool:
    """Add an occurrence to the rows to upsert, keyed by event; False if it is new and
    ``rows`` holds ``limit`` events already."""
    event, key = item.event, event_key(item.namespace, item.node, item.event)
    row = rows.get(key)
    if row is not None:
        row["count"] += event.count
        row["first_time"] = min(row["first_time"], event.time)
        row["last_time"] = max(row["last_time"], event.time)
        return True
    if limit is not None and len(rows) >= limit:
        return False
    rows[key] = {"key": key, "namespace": item.namespace, "node": item.node,
                 "app": event.app, "service": event.service, "kind": event.kind.value,
                 "message": event.message, "count": event.count,
                 "first_time": event.time, "last_time": event.time}
    return True


def merge(batch: Sequence[NodeEvent]) -> list[dict[str, Any]]:
    """Rows to upsert: occurrences of one event in the batch added up."""
    rows: dict[str, dict[str, Any]] = {}
    for item in batch:
        merge_into(rows, item)
    return list(rows.values())


def record_events(connection: Connection, batch: Sequence[NodeEvent]) -> int:
    """Upsert a batch (the caller commits); how many distinct events it held."""
    return upsert_rows(connection, merge(batch))


def upsert_rows(connection: Connection, rows: Sequence[dict[str, Any]]) -> int:
    """Upsert merged rows: a new event is inserted, a known one adds its count. One
    statement, compiled once and cached, run over the rows (``executemany``: SQLAlchemy
    sends them as multi-row inserts of ``ROWS_PER_STATEMENT``)."""
    if not rows:
        return 0
    postgres = connection.dialect.name == "postgresql"
    insert = postgresql_insert if postgres else sqlite_insert
    latest = func.greatest if postgres else func.max
    statement = insert(_EVENTS)
    statement = statement.on_conflict_do_update(
        index_elements=["key"],
        set_={"count": _EVENTS.c.count + statement.excluded.count,
              "last_time": latest(_EVENTS.c.last_time, statement.excluded.last_time)},
    )
    for start in range(0, len(rows), ROWS_PER_STATEMENT):
        connection.execute(statement, list(rows[start:start + ROWS_PER_STATEMENT]))
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
    """A thread that stores what ``submit`` hands it, merged, in batches. ``close`` flushes."""

    def __init__(
        self,
        store: Store,
        *,
        now: Callable[[], int],
        retention_seconds: int = RETENTION_SECONDS,
        max_per_node: int = MAX_PER_NODE,
        max_pending: int = MAX_PENDING,
        batch_seconds: float = BATCH_SECONDS,
        prune_seconds: float = PRUNE_SECONDS,
    ) -> None:
        self.store, self._now = store, now
        self.retention_seconds, self.max_per_node = retention_seconds, max_per_node
        self.max_pending = max_pending
        self.batch_seconds, self.prune_seconds = batch_seconds, prune_seconds
        self.dropped = 0  # events refused: too many distinct ones waiting
        self.stored = 0  # distinct events written (one per row and batch)
        self._changed = threading.Condition()
        self._pending: dict[str, dict[str, Any]] = {}
        self._accepted = 0  # events merged into _pending so far
        self._handled = 0  # of those, stored (or lost to a database error)
        self._stopping = False
        self._touched: set[tuple[str, str]] = set()
        self._next_prune = time.monotonic() + prune_seconds
        self._thread = threading.Thread(target=self._run, name="tether-events", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, namespace: str, node: str, events: Sequence[AppEvent]) -> None:
        """Merge a node's events into those waiting (the bridge worker's part: no I/O)."""
        refused = 0
        with self._changed:
            for event in events:
                if merge_into(self._pending, NodeEvent(namespace, node, event), limit=self.max_pending):
                    self._accepted += 1
                else:
                    refused += 1
            self.dropped += refused
            self._changed.notify_all()
        if refused:
            log.warning("%d events of %s/%s dropped: %d distinct events wait already",
                        refused, namespace, node, self.max_pending)

    def close(self, timeout: float = 5.0) -> None:
        """Store what waits, then stop the thread."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until everything submitted so far is stored (tests)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            target = self._accepted
            while self._handled < target:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
        return True

    # -- the writer's thread -------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._changed:
                if not self._pending and not self._stopping:
                    self._changed.wait(max(0.0, self._next_prune - time.monotonic()))
                stopping, waiting = self._stopping, bool(self._pending)
            if waiting:
                if not stopping:
                    time.sleep(self.batch_seconds)  # let a burst gather into one transaction
                with self._changed:
                    rows, self._pending = list(self._pending.values()), {}
                    accepted = self._accepted
                self._store(rows)
                with self._changed:
                    self._handled = accepted
                    self._changed.notify_all()
            if time.monotonic() >= self._next_prune:
                self.prune_now()
            if stopping:
                return

    def _store(self, rows: list[dict[str, Any]]) -> None:
        try:
            with self.store.writing() as connection:
                self.stored += upsert_rows(connection, rows)
            self._touched.update((row["namespace"], row["node"]) for row in rows)
        except Exception:  # a database hiccup loses this batch, never the writer
            log.exception("could not store %d events", len(rows))

    def prune_now(self) -> None:
        """Apply the retention (the writer's thread does, every ``prune_seconds``)."""
        self._next_prune = time.monotonic() + self.prune_seconds
        nodes, self._touched = sorted(self._touched), set()
        try:
            with self.store.writing() as connection:
                deleted = prune(connection, now=self._now(), nodes=nodes,
                                retention_seconds=self.retention_seconds,
                                max_per_node=self.max_per_node)
        except Exception:
            log.exception("could not prune events")
            return
        if deleted:
            log.info("pruned %d events (retention %d s, %d per node)", deleted,
                     self.retention_seconds, self.max_per_node)
