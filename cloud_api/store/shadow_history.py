"""Recording a node's shadow revisions, in the transaction that makes them.

Why it exists: ``tether shadow history NODE`` answers "what did this node run at 14:02 and
who changed it" (``store.models.history``). A revision is recorded by whichever writer
swaps the document -- the bridge's batches (``shadow_writing.write_batch``), matching and
rollouts (``locked_write``), REST (``services.shadows.update_shadow``) -- with the rows of
its whole batch inserted by one ``executemany`` before the same commit, so history never
holds a revision that was rolled back, nor misses one that was committed.

What is kept: every change of ``desired``; of ``reported``, only changes of what a node
runs (``apps``) or of an app's ``status``/``version``/``cause`` -- the heartbeats and
usage refreshes that make most reports would push out the revisions worth keeping.

The bound: ``prune`` keeps the newest ``keep`` rows of each node (100 by default,
``history_keep``). It runs in the background every ``history_prune_seconds`` (not per
write), and looks only at nodes that got a row since its last run: one ``DELETE`` that
ranks those nodes' rows with ``row_number()`` (an index on ``(namespace, node, id)``
serves it). Between two runs a node may hold ``keep`` plus what it wrote meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, tuple_

from cloud_api.store.engine import table_of
from cloud_api.store.models import ShadowRevision
from schemas.shadow import APPS_KEY, UpdateOutcome

HISTORY = table_of(ShadowRevision)
NODE_WRITER = "node"
_STATUS_KEYS = ("status", "version", "cause")
_INSERT = insert(HISTORY)


def revision(namespace: str, node: str, outcome: UpdateOutcome, *, writer: str) -> dict[str, Any] | None:
    """The history row of an accepted update; None if it changed nothing worth keeping."""
    state = outcome.request.state
    change: dict[str, Any] = {}
    section = "desired"
    desired, reported = state.get("desired"), state.get("reported")
    if isinstance(desired, dict) and outcome.desired_changed:
        change = desired
    elif isinstance(reported, dict):
        section, change = "reported", _runs(reported)
    if not change:
        return None
    document = outcome.document
    apps = {"desired": document.desired.get(APPS_KEY) or {},
            "reported": document.reported.get(APPS_KEY) or {}}
    return {"namespace": namespace, "node": node, "version": document.version,
            "at": document.timestamp, "section": section, "writer": writer[:160],
            "change": change, "apps": apps}


def _runs(patch: dict[str, Any]) -> dict[str, Any]:
    """What of a reported patch changes what the node runs or how (else ``{}``)."""
    change: dict[str, Any] = {}
    if patch.get(APPS_KEY) not in (None, {}):  # {}: a first report of no apps, no change
        change[APPS_KEY] = patch[APPS_KEY]
    stats = patch.get("appstats")
    if isinstance(stats, dict):
        kept = {app: ({key: body[key] for key in _STATUS_KEYS if key in body}
                      if isinstance(body, dict) else body)
                for app, body in stats.items()}
        kept = {app: body for app, body in kept.items() if body != {}}
        if kept:
            change["appstats"] = kept
    return change


def record(connection: Connection, rows: Iterable[dict[str, Any] | None]) -> int:
    """Insert ``rows`` (Nones skipped) with one ``executemany``; the caller commits."""
    kept = [row for row in rows if row is not None]
    if kept:
        connection.execute(_INSERT, kept)
    return len(kept)


def prune(connection: Connection, *, keep: int, since_id: int = 0) -> tuple[int, int]:
    """Delete all but the newest ``keep`` rows of each node that got a row with an id past
    ``since_id``; ``(rows deleted, the highest id seen)`` -- pass the latter next time."""
    top = connection.execute(select(func.max(HISTORY.c.id))).scalar() or 0
    if top <= since_id:
        return 0, since_id
    touched = select(HISTORY.c.namespace, HISTORY.c.node).where(HISTORY.c.id > since_id).distinct()
    rank = func.row_number().over(partition_by=(HISTORY.c.namespace, HISTORY.c.node),
                                  order_by=HISTORY.c.id.desc()).label("rank")
    ranked = (select(HISTORY.c.id, rank)
              .where(tuple_(HISTORY.c.namespace, HISTORY.c.node).in_(touched))
              .subquery())
    doomed = select(ranked.c.id).where(ranked.c.rank > keep)
    deleted = connection.execute(delete(HISTORY).where(HISTORY.c.id.in_(doomed))).rowcount
    return int(deleted or 0), int(top)


def node_history(
    connection: Connection, namespace: str, node: str, *, limit: int = 100,
    at: int | None = None,
) -> Sequence[dict[str, Any]]:
    """A node's revisions, newest first; with ``at`` (epoch seconds), those up to then."""
    query = (select(HISTORY.c.version, HISTORY.c.at, HISTORY.c.section, HISTORY.c.writer,
                    HISTORY.c.change, HISTORY.c.apps)
             .where(HISTORY.c.namespace == namespace, HISTORY.c.node == node)
             .order_by(HISTORY.c.id.desc()).limit(limit))
    if at is not None:
        query = query.where(HISTORY.c.at <= at)
    return [{"version": version, "time": when, "section": section, "writer": writer,
             "change": change, "apps": apps}
            for version, when, section, writer, change, apps in connection.execute(query)]
