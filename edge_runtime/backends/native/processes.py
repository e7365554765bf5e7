"""Local processes that outlive the agent: start, find again, stop.

Every process is started in a session of its own (``start_new_session``), so its pid is
also its process group: stopping a service signals the whole group (whatever the process
spawned goes with it), and a Ctrl-C or a SIGKILL of the agent reaches none of them. Each
start leaves a pid file, ``run/{service}-{replica}.pid`` under the app dir, holding the
pid, the process's create time (pids are reused; pid + create time are not) and the
digest of the spec it runs. A restarted agent finds its processes through these files
(``find``) and supervises them again instead of restarting them.

A process the agent started is its child: its exit code is known (``Popen.poll`` reaps
it). An adopted process is not: the agent only sees that it is gone (or a zombie its new
parent never reaped), and its exit code is unknown.

Output goes to ``logs/{service}-{replica}.log`` under the app dir, appended, rotated to
``.log.1`` when a start finds it over 1 MiB.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from edge_runtime.storage import atomic_write_bytes

log = logging.getLogger(__name__)

LOG_ROTATE_BYTES = 1 << 20
_CREATE_TIME_SLACK = 0.05


class Child(subprocess.Popen[bytes]):
    """A ``Popen`` that may be dropped while its process runs, on purpose.

    The backend leaves processes running when the agent stops (they survive an agent
    restart), so losing the handle is not the leak ``Popen.__del__`` warns about.
    """

    def __del__(self) -> None:
        pass


@dataclass(frozen=True)
class PidRecord:
    pid: int
    create_time: float
    digest: str
    restarts: int = 0


def exit_text(code: int) -> str:
    """How a process ended, from ``Popen.returncode``."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class Proc:
    """One live process of a replica: a child of this agent, or adopted from a previous one."""

    def __init__(self, ps: psutil.Process, child: Child | None = None) -> None:
        self.pid = ps.pid
        self.ps = ps
        self.child = child
        self.create_time = ps.create_time()
        self.ps.cpu_percent(None)  # starts the measurement; the first value means nothing

    def poll(self) -> str | None:
        """None while it runs, else how it ended."""
        if self.child is not None:
            code = self.child.poll()
            return None if code is None else exit_text(code)
        try:
            if self.ps.is_running() and self.ps.status() != psutil.STATUS_ZOMBIE:
                return None
        except psutil.Error:
            pass
        return "exit code unknown"

    def signal(self, sig: signal.Signals) -> None:
        """Signal the process's whole group (it leads one: it started a session)."""
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def usage(self) -> tuple[float | None, int | None]:
        """(cpu percent since the last call, resident memory in bytes), None if unknown."""
        try:
            with self.ps.oneshot():
                return self.ps.cpu_percent(None), int(self.ps.memory_info().rss)
        except psutil.Error:
            return None, None


def spawn(argv: list[str], *, cwd: Path, env: dict[str, str], log_path: Path) -> Proc:
    """Start a process in a new session; raises OSError if it cannot start."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if log_path.exists() and log_path.stat().st_size > LOG_ROTATE_BYTES:
        log_path.replace(log_path.with_name(log_path.name + ".1"))
    with open(log_path, "ab") as output:
        child = Child(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=output,
                      stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
    try:
        return Proc(psutil.Process(child.pid), child)
    except psutil.Error as exc:  # gone and reaped already: cannot happen before poll()
        raise OSError(f"process {child.pid} vanished at start: {exc}") from exc


def write_pid(path: Path, record: PidRecord) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, json.dumps(asdict(record)).encode())


def read_pid(path: Path) -> PidRecord | None:
    try:
        body = json.loads(path.read_text())
        return PidRecord(int(body["pid"]), float(body["create_time"]), str(body["digest"]),
                         int(body.get("restarts", 0)))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def find(record: PidRecord) -> Proc | None:
    """The live process ``record`` names, or None (gone, a zombie, or the pid reused)."""
    try:
        ps = psutil.Process(record.pid)
        if abs(ps.create_time() - record.create_time) > _CREATE_TIME_SLACK:
            return None
        if ps.status() == psutil.STATUS_ZOMBIE:
            return None
        return Proc(ps)
    except psutil.Error:
        return None


def stop_all(procs: list[Proc], *, grace: float) -> None:
    """SIGTERM every group, wait up to ``grace`` seconds, then SIGKILL what is left."""
    for proc in procs:
        proc.signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    alive = [proc for proc in procs if proc.poll() is None]
    while alive and time.monotonic() < deadline:
        time.sleep(0.02)
        alive = [proc for proc in alive if proc.poll() is None]
    for proc in alive:
        log.warning("process %d ignored SIGTERM for %g s; killing it", proc.pid, grace)
    for proc in procs:  # the leader may be gone while the rest of its group is not
        proc.signal(signal.SIGKILL)
    deadline = time.monotonic() + 2.0
    while alive and time.monotonic() < deadline:
        time.sleep(0.01)
        alive = [proc for proc in alive if proc.poll() is None]
