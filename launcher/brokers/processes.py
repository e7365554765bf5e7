"""Helpers for broker processes: free ports, waiting for a listener, stopping a group.

Every broker here runs in a session (process group) of its own, so stopping it stops
whatever it forked too, and only that: never a process found by name.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


def start_process(
    argv: list[str], *, log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a session of its own, its output appended to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            env=env, start_new_session=True,
        )


def wait_listening(
    process: subprocess.Popen[bytes], port: int, *, timeout: float, name: str, log: Path
) -> None:
    """Return once ``port`` accepts connections; ``RuntimeError`` with the end of the log
    if the process exits first or never listens (the process is stopped then)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        if listening(port):
            return
        time.sleep(0.05)
    exited = process.poll() is not None
    stop_group(process)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    what = "exited at start" if exited else f"did not listen on port {port} within {timeout} s"
    raise RuntimeError(f"{name} {what}:\n{tail}")


def stop_group(process: subprocess.Popen[bytes], *, grace: float = 10.0) -> None:
    """SIGTERM the process's group, wait up to ``grace`` seconds for every member of it to
    end (RabbitMQ's start script exits before its Erlang VM), then SIGKILL what is left.
    Descendants that left the group (Erlang's port helpers start sessions of their own)
    are waited for, then killed, too: each is known by its pid and its start time, so a
    pid reused meanwhile by some other process is never touched."""
    group = process.pid
    strays = _descendants(group)
    _signal_group(group, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        process.poll()  # reap the leader; the group lives on while any member does
        if not _group_alive(group):
            break
        time.sleep(0.05)
    else:
        _signal_group(group, signal.SIGKILL)
    process.wait()
    while (alive := [pid for pid, started in strays.items() if _started(pid) == started]):
        if time.monotonic() > deadline:
            for pid in alive:
                _kill(pid)
            break
        time.sleep(0.05)


def _descendants(root: int) -> dict[int, str]:
    """pid -> start time of every process below ``root`` (from /proc; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found: dict[int, str] = {}
    stack = list(children.get(root, []))
    while stack:
        pid = stack.pop()
        if (started := _started(pid)) is not None:
            found[pid] = started
        stack.extend(children.get(pid, []))
    return found


def _started(pid: int) -> str | None:
    """The process's start time (field 22 of /proc/PID/stat), or None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[19] if fields[0] != "Z" else None  # a zombie is as good as gone


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_group(group: int, signum: int) -> None:
    try:
        os.killpg(group, signum)
    except (ProcessLookupError, PermissionError):
        pass
