"""The edge node's memory across restarts and outages: a TinyDB file in the data dir.

A node must keep running its workloads when the cloud is unreachable, including after a
restart, so everything it needs is cached in ``DATA_DIR/cache.json``:

    document       the last shadow document known from the cloud (fetched with
                   ``shadow/get`` or advanced by deltas): desired, version, metadata
    acknowledged   the reported state the cloud has confirmed (the document's reported)
    outgoing       the latest full reported state of this node, sent or not: it is what
                   gets reported on reconnect (reports are coalesced, only the latest counts)
    resources      app/config/secret/... values fetched with ``resources/get``, keyed by
                   (kind, name, version); versions never change content, so they never expire

Writes go through ``AtomicJSONStorage``; ``save`` writes everything it is given in one
atomic write. A cache file that cannot be parsed (it cannot be torn, but a disk or a
person may break it) is moved aside, never deleted, and the node starts empty and
fetches its document again.
"""

from __future__ import annotations

import logging
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, NamedTuple

from tinydb import Query, TinyDB
from tinydb.table import Document

from edge_runtime.errors import CacheError
from edge_runtime.storage import AtomicJSONStorage
from schemas.shadow import JSONObject, ShadowDocument

log = logging.getLogger(__name__)

CACHE_FILENAME = "cache.json"
_ROW = 1  # the single-row tables keep their row under this id
_UNSET: Any = object()


class ResourceKey(NamedTuple):
    """What identifies a fetched resource: its content never changes for one version."""

    kind: str  # app | config | secret | certificate | registry
    name: str
    version: str


class Cache:
    """Typed access to the edge cache; one instance per process (the agent holds a lock)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / CACHE_FILENAME
        try:
            storage = AtomicJSONStorage(self.path)
        except CacheError as exc:
            if not self.path.exists():
                raise
            aside = self.path.with_name(f"{CACHE_FILENAME}.corrupt-{int(time.time())}")
            log.error("%s; moved it to %s and starting with an empty cache", exc, aside)
            try:
                self.path.replace(aside)
            except OSError as move_exc:
                raise CacheError(f"{exc}, and it cannot be moved aside: {move_exc}") from move_exc
            storage = AtomicJSONStorage(self.path)
        self._storage = storage
        self._db = TinyDB(storage=lambda: storage)

    # -- shadow state ----------------------------------------------------------------
    def document(self) -> ShadowDocument | None:
        """The cached document, its reported being the acknowledged state; None if none."""
        row = self._row("document")
        if row is None:
            return None
        acknowledged = self._row("acknowledged") or {}
        return ShadowDocument(
            desired=row.get("desired", {}),
            reported=acknowledged.get("reported", {}),
            metadata=row.get("metadata", {"desired": {}, "reported": {}}),
            version=row.get("version", 0),
            timestamp=row.get("timestamp", 0),
        )

    def outgoing(self) -> JSONObject | None:
        """The latest full reported state this node produced, or None."""
        row = self._row("outgoing")
        return None if row is None else dict(row.get("reported", {}))

    def save(
        self,
        *,
        document: ShadowDocument | None = _UNSET,
        outgoing: JSONObject | None = _UNSET,
    ) -> None:
        """Store what is given (None clears it), all in one atomic write."""
        with self._storage.deferred():
            if document is not _UNSET:
                if document is None:
                    self._set_row("document", None)
                    self._set_row("acknowledged", None)
                else:
                    self._set_row("document", {
                        "desired": document.desired,
                        "metadata": document.metadata,
                        "version": document.version,
                        "timestamp": document.timestamp,
                    })
                    self._set_row("acknowledged", {"reported": document.reported})
            if outgoing is not _UNSET:
                self._set_row("outgoing", None if outgoing is None else {"reported": outgoing})

    def batch(self) -> AbstractContextManager[None]:
        """Group several saves into one atomic write (one fsync), e.g. per message."""
        return self._storage.deferred()

    # -- resources -------------------------------------------------------------------
    def resource(self, key: ResourceKey) -> JSONObject | None:
        """A fetched resource value, or None if this version was never fetched."""
        row = self._db.table("resources").get(_matching(key))
        return None if row is None else dict(row["value"])

    def put_resource(self, key: ResourceKey, value: JSONObject) -> None:
        self._db.table("resources").upsert({**key._asdict(), "value": value}, _matching(key))

    def drop_resource(self, key: ResourceKey) -> None:
        self._db.table("resources").remove(_matching(key))

    def resource_keys(self) -> list[ResourceKey]:
        rows = self._db.table("resources").all()
        return [ResourceKey(row["kind"], row["name"], row["version"]) for row in rows]

    @property
    def unsaved(self) -> bool:
        """A write failed (a full disk): memory holds state the file does not."""
        return self._storage.unsaved

    def flush(self) -> bool:
        """Write again what a failed write left in memory only; True when all is on disk."""
        return self._storage.flush()

    def close(self) -> None:
        self._db.close()

    # -- rows ------------------------------------------------------------------------
    def _row(self, table: str) -> dict[str, Any] | None:
        row = self._db.table(table).get(doc_id=_ROW)
        return None if row is None else dict(row)

    def _set_row(self, table: str, value: dict[str, Any] | None) -> None:
        tbl = self._db.table(table)
        if value is None:
            tbl.truncate()
        else:
            tbl.upsert(Document(value, doc_id=_ROW))


def _matching(key: ResourceKey) -> Any:
    entry = Query()
    return (entry.kind == key.kind) & (entry.name == key.name) & (entry.version == key.version)
