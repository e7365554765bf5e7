"""Where function runtimes announce themselves and how the proxy finds them.

Files are the whole contract: the backends, the runtimes and the proxy share no memory,
and a proxy restarted next to running runtimes (even offline, after a reboot) finds them
again. Under ``DATA_DIR/functions/{app}/{function}/`` each ``*.json`` file is one
instance:

- **native**: the backend starts one runtime process per replica with
  ``runtime_command(...)``; each runtime binds a free loopback port and writes
  ``{"url", "pid"}`` to ``{replica}.json`` itself. An instance whose pid is gone is
  left out, so a crashed runtime is never picked.
- **kube**: the runtime runs in pods behind a ClusterIP Service; the backend writes
  ``{"url"}`` (no pid) to ``kube.json`` while the workload has a ready pod and removes
  it when it has none or the app goes. Kubernetes balances across the pods.

``FunctionDirectory`` reads those files for the proxy. Parsed files are cached by
(inode, mtime, size), so a lookup costs one ``scandir`` plus a ``stat`` per instance,
and an announcement replaced by a new runtime (a rename: new inode) is seen at once.
Files are never deleted here (whoever wrote them owns them). ``pick`` hands out
instances round robin, the rest in order as fallbacks.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas.names import is_valid_name

ANNOUNCE_SUFFIX = ".json"
FUNCTIONS_DIRNAME = "functions"
"""The directory under the edge's DATA_DIR that holds the announcements."""
HANDLER_ENV = "TETHER_FUNCTION_HANDLER"
CODE_DIR_ENV = "TETHER_FUNCTION_CODE_DIR"
APP_ENV = "TETHER_FUNCTION_APP"
NAME_ENV = "TETHER_FUNCTION_NAME"
"""The environment a runtime reads its defaults (and its context's app/function) from."""


@dataclass(frozen=True)
class Instance:
    """One running runtime of ``app/function``: where it listens and, for a local process,
    which process it is (``pid`` None: an endpoint its backend vouches for)."""

    app: str
    function: str
    replica: str
    url: str
    pid: int | None


def runtime_command(
    *, code_dir: Path | str, handler: str, announce: Path | str, python: str = sys.executable
) -> list[str]:
    """The argv the native backend runs for one replica (loopback, a free port)."""
    return [
        python, "-m", "edge_runtime.functions.runtime",
        "--code-dir", str(code_dir),
        "--handler", handler,
        "--host", "127.0.0.1",
        "--port", "0",
        "--announce", str(announce),
    ]  # fmt: skip


def write_announcement(path: Path, *, url: str, pid: int | None) -> None:
    """Write ``{"url", "pid"}`` (or ``{"url"}``) to ``path`` atomically (temp, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".announce-", suffix=".tmp")
    body: dict[str, Any] = {"url": url} if pid is None else {"url": url, "pid": pid}
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(body, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (signal 0 checks without sending)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _parse(app: str, function: str, replica: str, raw: Any) -> Instance | None:
    if not isinstance(raw, dict):
        return None
    url, pid = raw.get("url"), raw.get("pid")
    if not isinstance(url, str) or not url.startswith("http://"):
        return None
    if pid is not None and (not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0):
        return None
    return Instance(app, function, replica, url, pid)


class FunctionDirectory:
    """The announced runtimes under ``root`` (``DATA_DIR/functions``). Thread-safe."""

    def __init__(self, root: Path, *, alive: Callable[[int], bool] = pid_alive) -> None:
        self.root = Path(root)
        self._alive = alive
        self._lock = threading.Lock()
        self._cache: dict[Path, tuple[tuple[int, int, int], Instance | None]] = {}
        self._turns: dict[tuple[str, str], itertools.count[int]] = {}

    def announce_path(self, app: str, function: str, replica: int | str) -> Path:
        """Where replica ``replica`` of ``app/function`` announces itself."""
        return self.root / app / function / f"{replica}{ANNOUNCE_SUFFIX}"

    def instances(self, app: str, function: str) -> list[Instance]:
        """The live instances of ``app/function``, ordered by replica name."""
        if not (is_valid_name(app) and is_valid_name(function)):
            return []
        folder = self.root / app / function
        try:
            entries = sorted(
                (e for e in os.scandir(folder) if e.name.endswith(ANNOUNCE_SUFFIX)),
                key=lambda e: e.name,
            )
        except (FileNotFoundError, NotADirectoryError):
            return []
        found = []
        for entry in entries:
            instance = self._read(app, function, entry)
            if instance is not None and (instance.pid is None or self._alive(instance.pid)):
                found.append(instance)
        return found

    def pick(self, app: str, function: str) -> list[Instance]:
        """The live instances, rotated so that successive calls start round robin."""
        found = self.instances(app, function)
        if len(found) < 2:
            return found
        with self._lock:
            turn = next(self._turns.setdefault((app, function), itertools.count()))
        start = turn % len(found)
        return found[start:] + found[:start]

    def functions(self) -> list[tuple[str, str]]:
        """Every ``(app, function)`` with at least one live instance."""
        try:
            apps = sorted(p for p in self.root.iterdir() if p.is_dir())
        except FileNotFoundError:
            return []
        return [
            (app.name, function.name)
            for app in apps
            for function in sorted(p for p in app.iterdir() if p.is_dir())
            if self.instances(app.name, function.name)
        ]

    def _read(self, app: str, function: str, entry: os.DirEntry[str]) -> Instance | None:
        path = Path(entry.path)
        try:
            stat = entry.stat()
        except FileNotFoundError:
            return None
        key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        with self._lock:
            cached = self._cache.get(path)
        if cached is not None and cached[0] == key:
            return cached[1]
        try:
            raw = json.loads(path.read_bytes())
        except (OSError, ValueError):
            return None  # vanished or half-written by hand; runtimes write atomically
        instance = _parse(app, function, entry.name[: -len(ANNOUNCE_SUFFIX)], raw)
        with self._lock:
            self._cache[path] = (key, instance)
        return instance
