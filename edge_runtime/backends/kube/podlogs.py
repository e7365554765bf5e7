"""A pod's log as a ``LogSource``: ``read_namespaced_pod_log`` for the tail, then polling.

Why polling and not ``follow=true``: a followed log is an HTTP response held open, and the
thread reading it cannot be stopped until a line arrives; a stream whose follower went
away must end at its lease, not whenever the pod next writes. So a followed pod log is
read again at most every ``POLL_SECONDS`` (1 s) with ``sinceSeconds`` covering the time
since the last line and ``timestamps=true``; lines not newer than the last one seen are
dropped. Each read is bounded (``limitBytes``); the first container of the pod is read.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from edge_runtime.backends.kube.cluster import Cluster
from schemas.logs import MAX_TAIL_BYTES, cut_line

POLL_SECONDS = 1.0
Stamp = tuple[int, int]  # (epoch seconds, nanoseconds)


def parse_stamp(text: str) -> Stamp | None:
    """RFC 3339 with up to nanoseconds, as the kubelet writes it; None if it is not one."""
    head, dot, rest = text.partition(".")
    fraction = rest.rstrip("Z") if dot else ""
    try:
        base = datetime.fromisoformat((head if dot else text.rstrip("Z")) + "+00:00")
    except ValueError:
        return None
    if not fraction.isdigit() and fraction:
        return None
    return int(base.timestamp()), int((fraction or "0").ljust(9, "0")[:9])


def split_stamped(text: str) -> list[tuple[Stamp | None, str]]:
    found: list[tuple[Stamp | None, str]] = []
    for line in text.splitlines():
        stamp_text, _, rest = line.partition(" ")
        stamp = parse_stamp(stamp_text)
        found.append((stamp, cut_line(rest)) if stamp else (None, cut_line(line)))
    return found


class PodLogSource:
    """One pod's log (its first container)."""

    def __init__(
        self, cluster: Cluster, pod: dict[str, Any], *, clock: Callable[[], float] = time.time
    ) -> None:
        self.name = str(pod["metadata"]["name"])
        containers = (pod.get("spec") or {}).get("containers") or []
        self._container = containers[0].get("name") if containers else None
        self._cluster, self._clock = cluster, clock
        self._last: Stamp = (int(clock()), 0)
        self._next_read = 0.0

    def _read(self, **options: Any) -> list[tuple[Stamp | None, str]]:
        if self._container:
            options["container"] = self._container
        text = self._cluster.pod_log(self.name, timestamps=True, limit_bytes=MAX_TAIL_BYTES,
                                     **options)
        return split_stamped(text)

    def tail(self, lines: int) -> list[str]:
        self._last = (int(self._clock()), 0)
        if lines <= 0:
            return []
        found = self._read(tail_lines=lines)
        stamps = [stamp for stamp, _ in found if stamp is not None]
        if stamps:
            self._last = max(stamps)
        return [line for _, line in found]

    def poll(self) -> tuple[list[str], bool]:
        now = time.monotonic()
        if now < self._next_read:
            return [], False
        self._next_read = now + POLL_SECONDS
        since = max(1, math.ceil(self._clock() - self._last[0]) + 1)
        found = [(s, line) for s, line in self._read(since_seconds=since) if s and s > self._last]
        if found:
            self._last = max(stamp for stamp, _ in found if stamp)
        return [line for _, line in found], False
