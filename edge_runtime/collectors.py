"""What a node says about itself: ``reported.node`` (static facts) and ``reported.nodestats``.

DESIGN §5: ``reported.node`` holds static facts -- hostname, os, arch, kernel, python,
backend, plus what the backend adds (the Kubernetes version on kube) -- gathered once
when the engine starts. ``reported.nodestats`` holds usage, sampled by the engine every
``stats_seconds`` (default 30) and sent with its other changes through the one coalesced
report path, never on its own timer::

    {"cpu": 12.5,                                   # percent of all CPUs since the last sample
     "memory": {"total": 8201367552, "used": 2101395456},   # bytes; used = total - available
     "disk": {"total": 105088212992, "used": 33957384192}}  # bytes, of the data dir's filesystem

App status (``reported.appstats``) comes from the backends' ``observe``; see
``engine.status``.
"""

from __future__ import annotations

import logging
import platform
import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil

from schemas.shadow import JSONObject

log = logging.getLogger(__name__)


def node_facts(backend: str, *, extra: Mapping[str, Any] | None = None) -> JSONObject:
    """Static facts about this machine for ``reported.node``; ``extra`` from the backend."""
    uname = platform.uname()
    facts: JSONObject = {
        "hostname": socket.gethostname(),
        "os": uname.system.lower() or sys.platform,
        "arch": uname.machine,
        "kernel": uname.release,
        "python": platform.python_version(),
        "backend": backend,
    }
    for key, value in (extra or {}).items():
        facts.setdefault(key, value)  # a backend cannot hide the basic facts
    return facts


class NodeStats:
    """``node_stats`` of one data dir as a callable; primes psutil's CPU measurement."""

    def __init__(self, data_dir: Path) -> None:
        self._data_dir = data_dir
        psutil.cpu_percent(interval=None)  # the first reading means nothing; take it now

    def __call__(self) -> JSONObject:
        return node_stats(self._data_dir)


def node_stats(data_dir: Path) -> JSONObject:
    """CPU, memory and disk usage now; a part that cannot be read is left out."""
    stats: JSONObject = {"cpu": round(psutil.cpu_percent(interval=None), 1)}
    memory = psutil.virtual_memory()
    stats["memory"] = {"total": int(memory.total), "used": int(memory.total - memory.available)}
    try:
        disk = psutil.disk_usage(str(data_dir))
    except OSError as exc:
        log.debug("cannot read the disk usage of %s: %s", data_dir, exc)
    else:
        stats["disk"] = {"total": int(disk.total), "used": int(disk.used)}
    return stats
