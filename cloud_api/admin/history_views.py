"""How the CLI shows rollouts in waves, resource versions, diffs and shadow history.

Why it exists apart from ``admin.views``: these renderings belong to ``tether rollout
status|history``, ``tether diff`` and ``tether shadow history`` (issue 12), and ``--at``
takes times as an operator writes them; keeping them here keeps ``views`` and ``cli`` short.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from rich.table import Table

from cloud_api.admin.client import ClientError


def compact(value: Any) -> str:
    """JSON on one line, keys sorted: a value in a diff or a table cell."""
    return json.dumps(value, sort_keys=True, separators=(", ", ": "), ensure_ascii=False)


def _stamp(epoch: Any) -> str:
    if not isinstance(epoch, int):
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


def parse_at(text: str, *, now: float | None = None) -> int:
    """``--at``: epoch seconds, an ISO date-time (UTC unless it says), or ``HH:MM[:SS]``
    today (UTC). ``ClientError`` with what to write otherwise."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    try:
        if len(text) <= 8 and ":" in text:
            today = datetime.fromtimestamp(time.time() if now is None else now, UTC).date()
            moment = datetime.combine(today, datetime.strptime(text, "%H:%M:%S" if text.count(":") == 2
                                                               else "%H:%M").time(), UTC)
        else:
            moment = datetime.fromisoformat(text)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
    except ValueError:
        raise ClientError(0, f"--at {text!r}: write epoch seconds, 2026-12-06T14:02:00 or 14:02 "
                             "(UTC)") from None
    return int(moment.timestamp())


def history_table(body: dict[str, Any]) -> Table:
    table = Table(title=f"{body.get('kind')} {body.get('name')}: versions, newest first",
                  title_justify="left", box=None, pad_edge=False)
    for column in ("VERSION", "CREATED", "CURRENT", "CHANGED FROM THE ONE BEFORE"):
        table.add_column(column)
    for item in body.get("items", []):
        table.add_row(str(item.get("version")), _stamp(item.get("createdAt")),
                      "yes" if item.get("current") else "",
                      ", ".join(item.get("changed", [])) or "-")
    return table


def diff_lines(body: dict[str, Any]) -> list[str]:
    lines = [f"{body.get('kind')} {body.get('name')}: version {body.get('from')} -> {body.get('to')}"]
    for change in body.get("changes", []):
        if "from" not in change:
            lines.append(f"+ {change['path']}: {compact(change['to'])}")
        elif "to" not in change:
            lines.append(f"- {change['path']}: {compact(change['from'])}")
        else:
            lines.append(f"~ {change['path']}: {compact(change['from'])} -> {compact(change['to'])}")
    if len(lines) == 1:
        lines.append("(no difference)")
    return lines


def shadow_history_table(body: dict[str, Any]) -> Table:
    table = Table(title=f"node {body.get('node')}: shadow revisions, newest first (UTC)",
                  title_justify="left", box=None, pad_edge=False)
    for column in ("TIME", "VERSION", "SECTION", "WRITER"):
        table.add_column(column, no_wrap=True)
    for column in ("DESIRED APPS", "REPORTED APPS", "CHANGE"):
        table.add_column(column, overflow="fold")
    for item in body.get("items", []):
        apps = item.get("apps") or {}
        table.add_row(_stamp(item.get("time")), str(item.get("version")), str(item.get("section")),
                      str(item.get("writer")), _apps(apps.get("desired")), _apps(apps.get("reported")),
                      compact(item.get("change")))
    return table


def _apps(apps: Any) -> str:
    if not isinstance(apps, dict) or not apps:
        return "-"
    return ", ".join(f"{name}@{version}" for name, version in sorted(apps.items()))


def rollout_line(body: dict[str, Any]) -> str | None:
    """One line on a wave rollout (None for an app rolled out all at once)."""
    if body.get("phase") in (None, "allAtOnce"):
        return None
    outcomes = body.get("outcomes") or {}
    counts = ", ".join(f"{key} {outcomes.get(key, 0)}" for key in ("ready", "pending", "failed", "timedOut"))
    return (f"rollout {body['phase']}: version {body.get('stable') or 'none'} -> {body.get('target')}, "
            f"wave {body.get('wave')}; {counts}; {body.get('message')}")

