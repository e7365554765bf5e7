"""Group commit of shadow traffic: the write path that keeps up with a fleet.

Why it exists: one transaction (and so one fsync) per node message, each an ORM read and an
ORM compare-and-swap, capped the cloud at ~600 reported updates/s on SQLite and ~470/s on
PostgreSQL, with 88 % of a bridge worker's time in that path. A bridge worker now drains
every message waiting in its queue and hands the shadow operations among them to
``write_batch``, which serves the whole batch with one transaction:

1. it takes the write lock of the rows first: ``BEGIN IMMEDIATE`` on SQLite (the database's
   one writer lock, so nobody commits between our read and our write), ``SELECT ... ORDER BY
   node FOR UPDATE`` on PostgreSQL (row locks in one global order, so two replicas' batches
   cannot deadlock);
2. one ``SELECT`` reads every document the batch touches (a fixed statement sent to the
   driver, ``store.shadow_sql``: no ORM objects, no SQL compiled per batch);
3. the operations are applied in arrival order with the pure algebra of ``schemas.shadow``,
   so a node's second update in a batch builds on its first, and a ``shadow/get`` sees what
   came before it. Each update keeps its own version and its own rejection (409, 413);
4. one compare-and-swap ``UPDATE ... WHERE version = <read version>`` per touched node,
   writing only the sections that changed, sent per shape as one ``executemany`` (SQLite)
   or one ``UPDATE ... FROM (VALUES ...)`` (PostgreSQL), and one ``UPDATE`` of
   ``online``/``last_seen`` per status;
5. one commit. Only after it returns does the caller publish any reply: an ``accepted`` is
   never sent for an update that is not durable.

The swap still compares versions although the rows are locked: it is the guarantee DESIGN
§9 names, and it makes a writer that does not lock (``services.shadows.update_shadow``, used
by REST) safe beside this one. If a swap ever finds its row changed, the whole batch is
rolled back and run again from a fresh read, so nothing is written against a stale
document.

There is no document cache, and that was measured. A write-through cache validated by the
swap (a version and a per-creation ``incarnation`` column, cached documents never served to
``shadow/get`` or used for a rejection) was built, tested, and run against this path,
alternating, with 10,000 nodes (``tether bench fleet``, 10 nodes updating):

- holding rows as text, 10,000 of them: SQLite 2,451-2,757 against 2,298-2,857 updates/s,
  PostgreSQL 1,752-1,813 against 1,311-1,810/s, 12 MB more RSS: each batch still decoded
  its documents;
- holding decoded documents, 1,024 of them: worse. Kept alive across batches, they were
  promoted to the collector's older generations, whose full passes took twice as long
  (0.95 -> 1.8 s a run);
- holding decoded documents, 64 of them: a batch took 0.61 ms against 0.75 (p50, SQLite),
  but end to end SQLite gave 2,918-3,064 against 2,907-2,977/s and PostgreSQL 1,610-1,911
  against 1,800-1,844/s.

Where the rest goes: with the same bench's updates applied in memory and never stored, p50
was 1.9-2.2 ms against 3.1-3.6 ms stored, in alternate runs. Two thirds of the latency is the
MQTT round trip, paho and the simulator, on the same 2 cores; of a stored batch's 0.75 ms,
the commit (the log's fsync) is 0.26, the read 0.15 (mostly decoding), ``BEGIN IMMEDIATE``
0.05 and the swap 0.05. A cache is only worth its risk with a profile that shows the read.

Nor does PostgreSQL send a batch in fewer round trips, and that was measured too. A batch
there makes four (``BEGIN``, the locking read, the swaps, ``COMMIT``). Sent as two --
``BEGIN`` with the read in one message, then every swap as one statement with ``COMMIT``
behind it (the driver connection in autocommit; the statement divided by zero unless each
row held its version, which aborted the transaction and so the ``COMMIT``) -- a batch took
1.17 ms against 1.49 (p50), but end to end, alternating with this path at 10,000 nodes,
six pairs gave 1,485-2,288 against 1,487-2,408 updates/s. With psycopg's pipeline mode
instead, 958-1,471 against 2,015-2,085/s: profiled, the worker waited in the driver for
each statement it queued. Sent as two with statements prepared by name (``PREPARE``; the
simple protocol otherwise has PostgreSQL plan each statement anew, which took its CPU per
update from 0.065 to 0.11 ms), a batch of 4 alone on the machine took 554-600 us against
616-737, but under the fleet bench 1.14-1.46 ms against 1.16-1.44 (p50), and p50 latency
3.01-3.16 against 3.05-3.47 ms. Nor without the lock: the batch's rows read with no
transaction, each swap a statement committing by itself (``RETURNING`` the rows that
held their version; the nodes that moved written again the locked way) cut a batch of 4
alone from 754-810 to 607-660 us and its CPU by a quarter, but six alternating pairs at
10,000 nodes gave p50 2.44-3.23 against 2.67-3.07 ms. What a batch waits for is a core:
``tether bench fleet`` gives the CPU each update costs in every process, and the cloud, the
simulator, the broker and PostgreSQL together kept the two cores ~70 % busy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from sqlalchemy import Connection

from cloud_api.errors import NotFound, StoreError
from cloud_api.store import shadow_history
from cloud_api.store.engine import Store
from cloud_api.store.shadow_sql import ShadowStatements
from schemas.errors import Rejection
from schemas.shadow import (
    ShadowDocument,
    ShadowLimits,
    UpdateOutcome,
    UpdateRequest,
    apply_update,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_ATTEMPTS = 5
_CHUNK = 500  # nodes per SELECT: keeps the IN list well under every driver's parameter cap

_STATEMENTS = {dialect: ShadowStatements(dialect) for dialect in ("sqlite", "postgresql")}


def statements_of(connection: Connection) -> ShadowStatements:
    """The hot path's statements for ``connection``'s database (``store.shadow_sql``)."""
    return _STATEMENTS[connection.dialect.name]


# -- operations --------------------------------------------------------------------------
@dataclass
class ShadowOp:
    """One node message that reads or writes its shadow; ``error`` is set if it failed."""

    namespace: str
    node: str
    error: Rejection | None = field(default=None, init=False)

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.node)


@dataclass
class Update(ShadowOp):
    """``shadow/update`` (or a REST PATCH): ``outcome`` once applied and committed."""

    request: UpdateRequest = field(kw_only=True)
    by: str = field(default=shadow_history.NODE_WRITER, kw_only=True)  # who, for the history
    outcome: UpdateOutcome | None = field(default=None, init=False)


@dataclass
class Fetch(ShadowOp):
    """``shadow/get``: ``document`` as it stands after the operations before it."""

    document: ShadowDocument | None = field(default=None, init=False)


@dataclass
class Presence(ShadowOp):
    """A ``status`` message: ``known`` is False for a node the cloud does not have."""

    online: bool = field(kw_only=True)
    known: bool = field(default=False, init=False)


# -- the batch -------------------------------------------------------------------------
Change = Callable[[Connection, dict[tuple[str, str], ShadowDocument]], T]


def write_batch(
    store: Store, ops: Sequence[ShadowOp], *, now: int, limits: ShadowLimits, kept: bool = False,
) -> None:
    """Serve ``ops`` in one transaction (see the module docstring); results go on each op.

    If the database fails, every op gets the error (``StoreUnavailable``/``StoreError``).
    ``kept``: on the calling thread's kept connection (``Store.kept_connection``), for
    threads that do nothing else, like the bridge workers.
    """
    if not ops:
        return

    def apply(connection: Connection, documents: dict[tuple[str, str], ShadowDocument]) -> None:
        _apply(connection, ops, documents, now=now, limits=limits)
        shadow_history.record(connection, (  # in this transaction, one executemany
            shadow_history.revision(op.namespace, op.node, op.outcome, writer=op.by)
            for op in ops if isinstance(op, Update) and op.outcome is not None))

    try:
        locked_write(store, [op.key for op in ops], apply, kept=kept)
    except Rejection as exc:
        for op in ops:
            op.error = exc


def locked_write(
    store: Store, keys: Iterable[tuple[str, str]], change: Change[T], *, kept: bool = False,
) -> T:
    """Read the documents of ``keys`` with their rows locked, let ``change`` replace entries
    of the dict it is given, swap every changed document, commit; return what ``change``
    returned. Matching's fan-out writes through here too.

    ``Store.write_transaction`` takes the write lock first (on SQLite, this process's
    writers queue on a Python lock, then ``BEGIN IMMEDIATE``). Rolled back and run again
    (``change`` too) if a swap loses; ``StoreError`` after ``MAX_ATTEMPTS``. ``kept``: see
    ``write_batch``.
    """
    keys = list(keys)
    for attempt in range(MAX_ATTEMPTS):
        with store.write_transaction(kept=kept) as connection:
            documents = read_documents(connection, keys)
            originals = dict(documents)
            result = change(connection, documents)
            if swap_documents(connection, documents, originals):
                connection.commit()
                return result
            connection.rollback()
        log.info("a shadow changed under a locked write (attempt %d); reading again", attempt + 1)
    raise StoreError(f"shadows kept changing under a write of {len(keys)}; retry")


def _apply(
    connection: Connection, ops: Sequence[ShadowOp],
    documents: dict[tuple[str, str], ShadowDocument], *, now: int, limits: ShadowLimits,
) -> None:
    """Apply ``ops`` in order to ``documents``; record the statuses of known nodes."""
    presences: list[tuple[str, str, bool, int]] = []
    for op in ops:
        _reset(op)  # a retried batch starts from nothing
        document = documents.get(op.key)
        if isinstance(op, Presence):
            op.known = document is not None
            if op.known:
                presences.append((op.namespace, op.node, op.online, now))
            continue
        if document is None:
            op.error = NotFound(f"node {op.namespace}/{op.node} not found")
        elif isinstance(op, Fetch):
            op.document = document
        elif isinstance(op, Update):
            try:
                op.outcome = apply_update(document, op.request, now=now, limits=limits)
            except Rejection as exc:
                op.error = exc
            else:
                documents[op.key] = op.outcome.document
    if presences:  # in key order, like the shadow rows: replicas lock rows in one order
        presences.sort(key=lambda row: (row[0], row[1]))
        statements_of(connection).record_presences(connection, presences)


def _reset(op: ShadowOp) -> None:
    op.error = None
    if isinstance(op, Update):
        op.outcome = None
    elif isinstance(op, Fetch):
        op.document = None


def read_documents(
    connection: Connection, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], ShadowDocument]:
    """The documents of ``keys`` that exist; on PostgreSQL their rows stay locked until the
    transaction ends (``FOR UPDATE``, in node order)."""
    by_namespace: dict[str, set[str]] = {}
    for namespace, node in keys:
        by_namespace.setdefault(namespace, set()).add(node)
    statements = statements_of(connection)
    documents: dict[tuple[str, str], ShadowDocument] = {}
    for namespace in sorted(by_namespace):
        nodes = sorted(by_namespace[namespace])
        for start in range(0, len(nodes), _CHUNK):
            documents.update(statements.read(connection, namespace, nodes[start : start + _CHUNK]))
    return documents


def swap_documents(
    connection: Connection,
    documents: dict[tuple[str, str], ShadowDocument],
    originals: dict[tuple[str, str], ShadowDocument],
) -> bool:
    """Compare-and-swap every document that is not its original any more, on the original's
    version, writing only the sections that changed; False if any row no longer held that
    version (nothing is committed here)."""
    by_shape: dict[tuple[str, ...], list[tuple[tuple[str, str], ShadowDocument, int]]] = {}
    for key, document in documents.items():
        original = originals[key]
        if document is original:
            continue
        # the algebra shares what an update leaves alone, so identity tells what changed
        shape = tuple(section for section in ("desired", "reported")
                      if getattr(document, section) is not getattr(original, section))
        by_shape.setdefault(shape, []).append((key, document, original.version))
    statements = statements_of(connection)
    return all(statements.swap(connection, shape, swaps) for shape, swaps in by_shape.items())
