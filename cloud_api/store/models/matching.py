"""Matching that is owed: a row per namespace (or per node) whose desired apps must be
recomputed.

Why it is stored: a write that changes what nodes should run (an app, a config an app
mounts, a node's labels) returns as soon as it is stored; the recompute and its per-node
updates run in the background (``cloud_api.rematching``). The row is written in the same
transaction as the change, so a change that is stored is never left unmatched: if the
replica that took it dies, any replica finds the row and does the work. ``node`` is ``""``
for "every node of the namespace". ``ticket`` changes with every new request, so finishing
an older request never erases a newer one.
"""

from __future__ import annotations

from sqlmodel import Field, SQLModel

EVERY_NODE = ""


class PendingMatch(SQLModel, table=True):
    __tablename__ = "pending_matches"

    namespace: str = Field(primary_key=True, max_length=63)
    node: str = Field(primary_key=True, max_length=63)
    ticket: str = Field(max_length=32)
    requested_at: int
