"""Looking at the processes a native backend runs, from outside: through its pid files.

Processes outlive the agent on purpose, so every test that runs them kills what is left
with ``kill_leftovers`` once its agents and backends are stopped.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from edge_runtime.backends.native.processes import read_pid


def wait_for(predicate: Callable[[], Any], *, timeout: float = 5.0, what: str = "it") -> Any:
    """Poll ``predicate`` until it is truthy; its value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def pid_of(data_dir: Path, app: str, replica: str = "main-0") -> int | None:
    record = read_pid(data_dir / "apps" / app / "run" / f"{replica}.pid")
    return record.pid if record is not None else None


def running(pid: int | None) -> bool:
    try:
        return pid is not None and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def kill_leftovers(data_dir: Path) -> None:
    """Kill (and reap, when they are ours) the processes pid files under ``data_dir`` name."""
    for path in data_dir.glob("apps/*/run/*.pid"):
        record = read_pid(path)
        if record is None:
            continue
        try:
            os.killpg(record.pid, signal.SIGKILL)
            os.waitpid(record.pid, 0)
        except (ProcessLookupError, PermissionError, ChildProcessError):
            pass
