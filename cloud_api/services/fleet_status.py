"""The fleet at a glance: nodes by state and apps by status, each in one aggregate query.

Why it exists: the dashboard's overview and the ``/metrics`` fleet gauges need counts over
every node of a namespace (or of the cloud), and at 10,000 nodes loading the nodes or
their shadows into Python to count them costs seconds. These are ``GROUP BY`` queries
that return a few rows, whatever the size of the fleet; the JSON of each shadow is read
inside the database (SQLite's ``json_each``/``json_extract``, PostgreSQL's
``json_each_text``/``->>``).

A node's state is ``online``; ``offline``; ``revoked`` (it connected once, and has neither
a password nor a certificate left: it must be activated again); or ``new`` (never
activated). An app's status on a node is what the node reports in
``reported.appstats.APP.status``, or ``Unreported`` while it has reported nothing of it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlmodel import Session

NODE_STATES = ("online", "offline", "revoked", "new")
UNREPORTED = "Unreported"

_NODE_STATES_SQL = """
SELECT n.namespace, n.online, n.last_seen IS NULL AS never_seen,
       (EXISTS (SELECT 1 FROM node_credentials c
                WHERE c.namespace = n.namespace AND c.node = n.name)
        OR EXISTS (SELECT 1 FROM node_certificates t
                   WHERE t.namespace = n.namespace AND t.node = n.name
                   AND t.revoked_at IS NULL)) AS has_credential,
       count(*)
FROM nodes n {where}
GROUP BY n.namespace, n.online, never_seen, has_credential
"""

# (namespace, app, reported status, reported version == desired, node online) -> nodes
_APP_STATUS_SQL = {
    "sqlite": """
SELECT s.namespace, d.key,
       json_extract(s.reported, '$.appstats."' || d.key || '".status'),
       coalesce(json_extract(s.reported, '$.apps."' || d.key || '"') = d.value, 0),
       n.online, count(*)
FROM shadows s JOIN nodes n ON n.namespace = s.namespace AND n.name = s.node,
     json_each(s.desired, '$.apps') d
{where}
GROUP BY 1, 2, 3, 4, 5
""",
    "postgresql": """
SELECT s.namespace, d.key,
       s.reported -> 'appstats' -> d.key ->> 'status',
       coalesce((s.reported -> 'apps' ->> d.key) = d.value, false),
       n.online, count(*)
FROM shadows s JOIN nodes n ON n.namespace = s.namespace AND n.name = s.node,
     json_each_text(CASE WHEN json_typeof(s.desired -> 'apps') = 'object'
                         THEN s.desired -> 'apps' ELSE '{{}}'::json END) d
{where}
GROUP BY 1, 2, 3, 4, 5
""",
}


@dataclass
class AppCounts:
    """How one app stands across the nodes it is matched to."""

    matched: int = 0
    updated: int = 0  # report the desired version
    offline: int = 0
    by_status: dict[str, int] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return self.by_status.get("Failed", 0)

    @property
    def running(self) -> int:
        return self.by_status.get("Running", 0)

    @property
    def state(self) -> str:
        """``Failing`` if any node fails it; ``Complete`` when every node runs the desired
        version; ``Progressing`` otherwise; ``Unmatched`` with no node."""
        if not self.matched:
            return "Unmatched"
        if self.failed:
            return "Failing"
        if self.updated == self.matched and self.running + self.by_status.get("Succeeded", 0) == self.matched:
            return "Complete"
        return "Progressing"


def _where(column: str, namespace: str | None) -> tuple[str, dict[str, Any]]:
    return (f"WHERE {column} = :namespace", {"namespace": namespace}) if namespace else ("", {})


def node_states(session: Session, namespace: str | None = None) -> dict[str, dict[str, int]]:
    """namespace -> state -> number of nodes (every state present, maybe 0)."""
    where, params = _where("n.namespace", namespace)
    counts: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(NODE_STATES, 0))
    rows = session.connection().execute(text(_NODE_STATES_SQL.format(where=where)), params)
    for ns, online, never_seen, has_credential, number in rows:
        if not has_credential:
            state = "new" if never_seen else "revoked"
        else:
            state = "online" if online else "offline"
        counts[ns][state] += int(number)
    if namespace and namespace not in counts:
        counts[namespace] = dict.fromkeys(NODE_STATES, 0)
    return dict(counts)


def app_counts(session: Session, namespace: str | None = None) -> dict[str, dict[str, AppCounts]]:
    """namespace -> app -> its counts, for every app some node's desired state holds."""
    dialect = session.connection().dialect.name
    where, params = _where("s.namespace", namespace)
    query = text(_APP_STATUS_SQL["sqlite" if dialect == "sqlite" else "postgresql"].format(where=where))
    counts: dict[str, dict[str, AppCounts]] = defaultdict(dict)
    for ns, app, status, updated, online, number in session.connection().execute(query, params):
        entry = counts[ns].setdefault(app, AppCounts())
        number = int(number)
        entry.matched += number
        entry.updated += number if updated else 0
        entry.offline += 0 if online else number
        key = status if isinstance(status, str) else UNREPORTED
        entry.by_status[key] = entry.by_status.get(key, 0) + number
    return dict(counts)
