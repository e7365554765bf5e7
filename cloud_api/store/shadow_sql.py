"""The shadow write path's statements, sent straight to the database driver.

Why it exists: ``store.shadow_writing`` runs three statements per batch (read the
documents, swap them, record statuses), and for a batch of one update SQLAlchemy's
execution machinery cost more CPU than the statements themselves: compiling the expanding
``IN`` list, building parameters, processing JSON columns. Measured with
``tether bench serving`` on SQLite, a lone ``shadow/update`` cost 665 µs of CPU in
``write_batch``, ~250 µs of them in SQLAlchemy. Here each statement is a fixed string per
dialect (PostgreSQL's swap: one per number of rows), executed on the DBAPI cursor of the
caller's SQLAlchemy connection (so inside its transaction), with JSON encoded and decoded
once, by the store's own functions.

What stays with SQLAlchemy: the connection, its pool, its transaction (``begin``,
``commit``, ``rollback``) and the schema. The statements name the tables and columns of
``store.models`` and are checked against them by the tests of the write path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection

from cloud_api.store.engine import decode_stored_json, encode_stored_json
from schemas.shadow import ShadowDocument

SECTIONS = ("desired", "reported")
SWAP_CHUNK = 1000  # rows per PostgreSQL swap statement: 8 parameters each, the cap is 65,535
Key = tuple[str, str]


class ShadowStatements:
    """The statements of one dialect (SQLite's ``?`` and ``IN``; PostgreSQL's ``%s``,
    ``= ANY`` and ``FOR UPDATE``)."""

    def __init__(self, dialect: str) -> None:
        self.sqlite = dialect == "sqlite"
        mark = "?" if self.sqlite else "%s"
        json_mark = mark if self.sqlite else "%s::json"
        text = "" if self.sqlite else "::text"
        self._mark = mark
        self._select = (f"SELECT node, desired{text}, reported{text}, metadata{text}, version, "
                        f"timestamp FROM shadows WHERE namespace = {mark} AND node ")
        self._swaps: dict[tuple[str, ...], str] = {}
        for shape in ((), ("desired",), ("reported",), ("desired", "reported")):
            assignments = [f"{section} = {json_mark}" for section in shape]
            assignments += [f"metadata = {json_mark}", f"version = {mark}", f"timestamp = {mark}"]
            self._swaps[shape] = (f"UPDATE shadows SET {', '.join(assignments)} WHERE "
                                  f"namespace = {mark} AND node = {mark} AND version = {mark}")
        self.presence = (f"UPDATE nodes SET online = {mark}, last_seen = {mark} "
                         f"WHERE namespace = {mark} AND name = {mark}")
        # PostgreSQL: the swaps of a shape in one statement, their rows in a VALUES list.
        # psycopg sends an executemany as a pipeline and waits on the socket once per row:
        # in one process, two runs of 3,000 batches of 4 updates (locking read, apply, swap,
        # commit) alternating the two forms, a batch took 437-460 us of CPU this way against
        # 526-545 with executemany
        self._swap_heads: dict[tuple[str, ...], tuple[str, str]] = {}
        self._swap_rows: dict[tuple[str, ...], str] = {}
        for sections in self._swaps:
            columns = [*sections, "metadata", "version", "timestamp", "namespace", "node", "expected"]
            assignments = [f"{section} = v.{section}::json" for section in (*sections, "metadata")]
            assignments += ["version = v.version", "timestamp = v.timestamp"]
            self._swap_heads[sections] = (
                f"UPDATE shadows AS s SET {', '.join(assignments)} FROM (VALUES ",
                (f") AS v({', '.join(columns)}) WHERE s.namespace = v.namespace "
                 "AND s.node = v.node AND s.version = v.expected"))
            self._swap_rows[sections] = "({})".format(", ".join(
                ["%s"] * (len(sections) + 1) + ["%s::int"] * 2 + ["%s"] * 2 + ["%s::int"]))

    def read(self, connection: Connection, namespace: str,
             nodes: Sequence[str]) -> dict[Key, ShadowDocument]:
        """The documents of ``nodes`` (sorted) that exist; on PostgreSQL their rows stay
        locked until the transaction ends, taken in node order."""
        if self.sqlite:
            sql = f"{self._select}IN ({','.join('?' * len(nodes))}) ORDER BY node"
            params: tuple[Any, ...] = (namespace, *nodes)
        else:
            sql = f"{self._select}= ANY(%s) ORDER BY node FOR UPDATE"
            params = (namespace, list(nodes))
        cursor = _cursor(connection)
        try:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        finally:
            cursor.close()
        return {
            (namespace, node): ShadowDocument(
                desired=decode_stored_json(desired), reported=decode_stored_json(reported),
                metadata=decode_stored_json(meta), version=version, timestamp=timestamp)
            for node, desired, reported, meta, version, timestamp in rows
        }

    def swap(self, connection: Connection, shape: tuple[str, ...],
             swaps: Sequence[tuple[Key, ShadowDocument, int]]) -> bool:
        """Compare-and-swap each ``(key, document, expected version)``, writing the sections
        of ``shape``; False if any row no longer held its expected version."""
        rows = [
            (*(encode_stored_json(getattr(document, section)) for section in shape),
             encode_stored_json(document.metadata), document.version, document.timestamp,
             namespace, node, expected)
            for (namespace, node), document, expected in swaps
        ]
        cursor = _cursor(connection)
        try:
            if self.sqlite:  # sqlite3 adds up the rows an executemany changed
                cursor.executemany(self._swaps[shape], rows)
                return bool(cursor.rowcount == len(rows))
            head, tail = self._swap_heads[shape]
            swapped = 0
            for start in range(0, len(rows), SWAP_CHUNK):  # under the driver's parameter cap
                chunk = rows[start : start + SWAP_CHUNK]
                cursor.execute(head + ", ".join([self._swap_rows[shape]] * len(chunk)) + tail,
                               [value for row in chunk for value in row])
                swapped += cursor.rowcount
            return swapped == len(rows)
        finally:
            cursor.close()

    def record_presences(self, connection: Connection,
                         presences: Sequence[tuple[str, str, bool, int]]) -> None:
        """``online``/``last_seen`` of ``(namespace, node, online, now)``, in that order."""
        cursor = _cursor(connection)
        try:
            cursor.executemany(self.presence, [(online, now, namespace, node)
                                               for namespace, node, online, now in presences])
        finally:
            cursor.close()


def _cursor(connection: Connection) -> Any:
    """A cursor of the DBAPI connection under ``connection``, in its transaction."""
    return connection.connection.cursor()
