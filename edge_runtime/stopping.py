"""``tether edge stop``: stop the agent of a data dir, and, if asked, the apps it runs.

Why it exists: an agent stopped with SIGTERM (``systemctl stop``, Ctrl-C) leaves its native
apps running on purpose, so that restarting or upgrading the agent restarts no app (the
next agent adopts them: same pids, no second copy). An operator who wants the apps gone
(taking a node out of service, uninstalling) needs a way that leaves no orphan process;
this is it.

``stop_agent`` finds the agent through the data dir's lock (``DATA_DIR/agent.lock``, which
holds its pid while it runs), sends it SIGTERM and waits until it lets go of the lock, then
holds the lock itself so that no agent starts while ``stop_apps`` works. ``stop_apps``
stops every process the native backend's pid files name (SIGTERM to each process group,
SIGKILL after the grace period, as the backend's own ``remove`` does) and deletes those
pid files. The apps' applied state and logs stay: the next ``tether edge run`` starts the
apps again from the node's cached desired state.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edge_runtime.backends.native.processes import Proc, find, read_pid, stop_all
from edge_runtime.backends.native.rendering import APPS_DIRNAME
from edge_runtime.errors import EdgeError
from edge_runtime.functions.directory import FUNCTIONS_DIRNAME

__all__ = ["LOCK_FILENAME", "stop_agent", "stop_apps"]

LOCK_FILENAME = "agent.lock"  # the same file edge_runtime.agent.DataDirLock locks


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _holder(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


@contextmanager
def stop_agent(data_dir: Path, *, timeout: float) -> Iterator[int | None]:
    """SIGTERM the agent running on ``data_dir`` and wait until it has stopped; yields its
    pid (None: no agent ran) while holding the data dir's lock."""
    if not data_dir.is_dir():
        raise EdgeError(f"no data dir {data_dir}: pass the agent's --data-dir")
    path = data_dir / LOCK_FILENAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise EdgeError(f"cannot open {path}: {exc.strerror or exc}") from exc
    try:
        pid: int | None = None
        if not _try_lock(fd):
            pid = _holder(path)
            if pid is None:
                raise EdgeError(f"an agent holds {path} but its pid is not in it: stop it by hand")
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass  # it is exiting; its lock goes with it
            except PermissionError as exc:
                raise EdgeError(f"not allowed to stop the agent (pid {pid}): run as its user "
                                "or root") from exc
            deadline = time.monotonic() + timeout
            while not _try_lock(fd):
                if time.monotonic() > deadline:
                    raise EdgeError(f"the agent (pid {pid}) did not stop within {timeout:g} s; "
                                    f"kill it (kill -9 {pid}) and run this again")
                time.sleep(0.05)
        yield pid
    finally:
        os.close(fd)  # releases the lock


def stop_apps(data_dir: Path, *, grace: float) -> list[str]:
    """Stop every native app process the pid files under ``data_dir`` name; returns
    ``app/service-replica`` of each one that was running. Call it with no agent running."""
    root = data_dir / APPS_DIRNAME
    found: list[tuple[str, Proc]] = []
    pid_files: list[Path] = []
    for app_dir in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        for pid_file in sorted((app_dir / "run").glob("*.pid")):
            pid_files.append(pid_file)
            record = read_pid(pid_file)
            proc = find(record) if record is not None else None
            if proc is not None:
                found.append((f"{app_dir.name}/{pid_file.stem}", proc))
    stop_all([proc for _, proc in found], grace=grace)
    for pid_file in pid_files:
        pid_file.unlink(missing_ok=True)
    shutil.rmtree(data_dir / FUNCTIONS_DIRNAME, ignore_errors=True)  # runtimes' announcements
    return [name for name, _ in found]
