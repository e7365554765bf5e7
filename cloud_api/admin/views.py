"""How the admin CLI shows objects: tables per kind, ``describe node``, rollouts, YAML/JSON.

Why it exists: rendering is the CLI layer's (STYLE §11) but would swamp the commands in
``cli``; here each kind's columns are a small table of (header, getter), so a new
kind is a new entry, and the rendering is tested by the CLI tests.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import yaml
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

Getter = Callable[[dict[str, Any]], str]


def when(epoch: Any) -> str:
    if not isinstance(epoch, int | float):
        return "never"
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def labels_text(labels: Any) -> str:
    if not isinstance(labels, dict) or not labels:
        return "<none>"
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def _keys(field: str) -> Getter:
    def get(item: dict[str, Any]) -> str:
        value = item.get(field)
        keys = sorted(value) if isinstance(value, dict | list) else []
        return ",".join(str(key) for key in keys) or "<none>"
    return get


def _field(name: str, empty: str = "") -> Getter:
    return lambda item: str(item.get(name) if item.get(name) not in (None, "") else empty)


COLUMNS: dict[str, list[tuple[str, Getter]]] = {
    "namespaces": [("NAME", _field("name")), ("CREATED", lambda i: when(i.get("createdAt")))],
    "nodes": [
        ("NAME", _field("name")),
        ("LABELS", lambda i: labels_text(i.get("labels"))),
        ("ONLINE", lambda i: "yes" if i.get("online") else "no"),
        ("MODE", _field("mode")),
        ("LAST SEEN", lambda i: when(i.get("lastSeen"))),
    ],
    "apps": [
        ("NAME", _field("name")),
        ("TYPE", _field("type")),
        ("SELECTOR", _field("selector", "<all nodes>")),
        ("VERSION", _field("version")),
        ("SERVICES", lambda i: ",".join(s.get("name", "?") for s in i.get("services", []))),
    ],
    "configs": [("NAME", _field("name")), ("KEYS", _keys("data")), ("VERSION", _field("version"))],
    "secrets": [("NAME", _field("name")), ("KEYS", _keys("keys")), ("VERSION", _field("version"))],
    "certificates": [
        ("NAME", _field("name")),
        ("SUBJECT", _field("subject")),
        ("NOT AFTER", lambda i: when(i.get("notAfter"))),
        ("VERSION", _field("version")),
    ],
    "registries": [
        ("NAME", _field("name")),
        ("ADDRESS", _field("address")),
        ("USERNAME", _field("username", "<none>")),
        ("VERSION", _field("version")),
    ],
}


WIDE: list[tuple[str, Getter]] = [
    ("LABELS", lambda i: labels_text(i.get("labels"))),
    ("DESCRIPTION", _field("description", "<none>")),
    ("CREATED", lambda i: when(i.get("createdAt"))),
]


def _agent_column(item: dict[str, Any]) -> str:
    agent = _object(item.get("agent"))
    if not agent:
        return "<none>"
    text = f"{agent.get('version', '?')} {agent.get('state', '')}".rstrip()
    return text + (f" -> {agent['target']}" if agent.get("target") and
                   agent.get("target") != agent.get("version") else "")


WIDE_OF_KIND: dict[str, list[tuple[str, Getter]]] = {"nodes": [("AGENT", _agent_column)]}
"""Columns ``-o wide`` adds for one kind (from fields the CLI attaches to each item)."""


def columns_of(plural: str, *, wide: bool = False,
               namespaces: bool = False) -> list[tuple[str, Getter]]:
    """The columns of a kind; ``wide`` adds labels, description and creation time (those
    not shown already); ``namespaces`` (``-A``) puts the namespace first."""
    columns = list(COLUMNS[plural])
    if wide:
        shown = {header for header, _ in columns}
        columns += [column for column in WIDE + WIDE_OF_KIND.get(plural, [])
                    if column[0] not in shown]
    if namespaces:
        columns.insert(0, ("NAMESPACE", _field("namespace")))
    return columns


def object_table(plural: str, items: list[dict[str, Any]], *, wide: bool = False,
                 namespaces: bool = False, header: bool = True) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold", show_header=header)
    columns = columns_of(plural, wide=wide, namespaces=namespaces)
    for name, _ in columns:
        table.add_column(name, overflow="fold")
    for item in items:
        table.add_row(*(get(item) for _, get in columns))
    return table


def audit_table(items: list[dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("TIME", "TOKEN", "ROLE", "ACTION", "OBJECT", "VERSION", "STATUS"):
        table.add_column(column, overflow="fold")
    for e in items:
        where = f"{e.get('namespace')}/" if e.get("namespace") else ""
        obj = f"{e.get('kind')}/{where}{e.get('name') or ''}"
        versions = f"{e.get('beforeVersion') or '-'} -> {e.get('afterVersion') or '-'}"
        status = f"{e.get('status')}" + ("" if e.get("outcome") == "done" else f" {e.get('outcome')}")
        table.add_row(str(e.get("time")), str(e.get("tokenId") or "-"), str(e.get("role") or "-"),
                      str(e.get("action")), obj, versions, status)
    return table


def token_table(items: list[dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("ID", "ROLE", "NAMESPACES", "DESCRIPTION", "CREATED", "REVOKED"):
        table.add_column(column, overflow="fold")
    for t in items:
        table.add_row(str(t.get("id")), str(t.get("role")),
                      ",".join(t.get("namespaces") or []) or "<all>",
                      t.get("description") or "", when(t.get("createdAt")),
                      when(t.get("revokedAt")) if t.get("revokedAt") else "-")
    return table


def dump(value: Any, output: str) -> str:
    if output == "json":
        return json.dumps(value, indent=2, sort_keys=True)
    text: str = yaml.safe_dump(value, sort_keys=False, allow_unicode=True)
    return text.rstrip("\n")


def _pairs(title: str, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold", box=None,
                  show_header=False, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in rows:
        table.add_row(key, value)
    return table


def _object(value: object) -> dict[str, Any]:
    """``value`` if it is a JSON object, else ``{}`` (a node may report anything)."""
    return value if isinstance(value, dict) else {}


def describe_node(node: dict[str, Any], document: dict[str, Any]) -> RenderableType:
    """Identity, liveness, desired vs reported apps with their status, delta, node facts."""
    state = document.get("state", {})
    desired, reported = state.get("desired") or {}, state.get("reported") or {}
    header = _pairs(f"node {node.get('namespace')}/{node.get('name')}", [
        ("Labels", labels_text(node.get("labels"))),
        ("Description", node.get("description") or "<none>"),
        ("Mode", str(node.get("mode"))),
        ("Online", "yes" if node.get("online") else "no"),
        ("Last seen", when(node.get("lastSeen"))),
        ("Shadow version", str(document.get("version"))),
        ("Agent", _agent_text(_object(desired.get("sysapps")).get("tether"),
                              _object(reported.get("sysapps")).get("tether"))),
    ])
    apps = Table(title="Apps", title_justify="left", title_style="bold", box=None, pad_edge=False)
    for column in ("APP", "DESIRED", "REPORTED", "STATUS", "CAUSE"):
        apps.add_column(column, overflow="fold")
    desired_apps = _object(desired.get("apps"))
    reported_apps = _object(reported.get("apps"))
    stats = _object(reported.get("appstats"))
    for name in sorted(set(desired_apps) | set(reported_apps)):
        stat = _object(stats.get(name))
        apps.add_row(name, str(desired_apps.get(name, "-")), str(reported_apps.get(name, "-")),
                     str(stat.get("status", "-")), str(stat.get("cause", "")))
    facts = _object(reported.get("node"))
    delta = state.get("delta") or {}
    parts: list[RenderableType] = [header, Text(""), apps, Text("")]
    parts.append(_pairs("Delta (desired, not yet reported)",
                        [("", json.dumps(delta, sort_keys=True) if delta else "<none>")]))
    parts.append(Text(""))
    parts.append(_pairs("Node facts", [(k, str(v)) for k, v in sorted(facts.items())] or
                        [("", "<none reported>")]))
    return Group(*parts)


def _agent_text(desired: object, reported: object) -> str:
    """``1.0.0 Running`` (``-> 1.1.0`` while desired names another, ``: cause`` if any)."""
    have, want = _object(reported), _object(desired)
    text = f"{have.get('version', '<not reported>')} {have.get('state', '')}".rstrip()
    if want.get("version") and want.get("version") != have.get("version"):
        text += f" (desired {want['version']})"
    if have.get("cause"):
        text += f": {have['cause']}"
    return text


def rollout_table(rollout: dict[str, Any]) -> Table:
    counts = rollout.get("counts", {})
    title = (f"app {rollout.get('app')} version {rollout.get('version')}: "
             + ", ".join(f"{key} {counts.get(key, 0)}"
                         for key in ("matched", "updated", "running", "failed", "offline")))
    table = Table(title=title, title_justify="left", box=None, pad_edge=False)
    waves = rollout.get("phase", "allAtOnce") != "allAtOnce"  # a rollout in waves (spec.rollout)
    columns = ["NODE", "DESIRED", "REPORTED", "STATUS", "RESTARTS", "ONLINE"] + (
        ["WAVE", "OUTCOME"] if waves else ["CAUSE"])
    for column in columns:
        table.add_column(column)
    for node in rollout.get("nodes", []):
        row = [node.get("node", "?"), str(node.get("desiredVersion")),
               str(node.get("reportedVersion") or "-"), str(node.get("status") or "-"),
               str(node.get("restarts") or 0), "yes" if node.get("online") else "no"]
        if waves:
            outcome = node.get("outcome") or "-"
            row += [str(node.get("wave") or "-"),
                    f"{outcome}: {node['cause']}" if node.get("cause") else outcome]
        else:
            row.append(str(node.get("cause") or ""))
        table.add_row(*row)
    return table
