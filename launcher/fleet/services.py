"""What the fleet bench runs besides the fleet: cloud processes, a scratch database, and
readings of a process's memory and CPU, of the CPU of the database's server processes, and
of the machine's cores (``/proc/stat``: busy, stolen by the hypervisor).

The cloud under test is ``tether cloud serve`` as a child process (the same interpreter,
the same source tree), so its RSS and CPU time are its own and not the simulator's: both
are read from ``/proc/PID`` (``VmRSS``; ``utime + stime`` in clock ticks). Replicas
share one data directory -- the admin token, the secret key and the CA must be the same --
and are started one after the other, so the first creates those files alone. With a
PostgreSQL server the bench creates a database of its own for the run and drops it
after, so runs never see each other's nodes.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg

import launcher

PROJECT_ROOT = Path(launcher.__file__).resolve().parent.parent
_TICKS = os.sysconf("SC_CLK_TCK")


class ServiceError(RuntimeError):
    """A process or database the bench needs did not start, or went away."""


@dataclass(frozen=True)
class ProcessSample:
    rss_bytes: int
    cpu_seconds: float


def sample_process(pid: int) -> ProcessSample:
    """Resident memory and CPU time (user + system) of ``pid`` now."""
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
    # the command name (field 2) may hold spaces; the fields after its ')' are fixed
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return ProcessSample(rss, (int(fields[11]) + int(fields[12])) / _TICKS)


@dataclass(frozen=True)
class MachineSample:
    """CPU seconds of every core together since boot (``/proc/stat``): busy (user, nice,
    system, irq, softirq), stolen by the hypervisor, and in all."""

    busy: float
    steal: float
    total: float


def sample_machine() -> MachineSample:
    """The machine's CPU counters now."""
    counters = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = counters
    return MachineSample(busy=(user + nice + system + irq + softirq) / _TICKS, steal=steal / _TICKS,
                         total=sum(counters) / _TICKS)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class CloudProcess:
    """``tether cloud serve`` as a child, on a free loopback port, logging to a file."""

    def __init__(
        self, *, data_dir: Path, mqtt_url: str, log_path: Path, database_url: str | None = None,
        share_group: str | None = None,
    ) -> None:
        self.data_dir, self.log_path = data_dir, log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = [sys.executable, "-m", "tether", "cloud", "serve", "--host", "127.0.0.1",
                        "--http-port", str(self.port), "--data-dir", str(data_dir),
                        "--mqtt-url", mqtt_url, "--log-level", "warning"]
        if database_url is not None:
            self.command += ["--database-url", database_url]
        if share_group is not None:
            self.command += ["--share-group", share_group]
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.process is None:
            raise ServiceError("the cloud process is not running")
        return self.process.pid

    def start(self, *, timeout: float = 60.0) -> None:
        """Start it and wait until its API answers and its bridge is subscribed."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(PROJECT_ROOT), *filter(None, [env.get("PYTHONPATH")])])
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(self.command, cwd=PROJECT_ROOT, env=env,
                                        stdin=subprocess.DEVNULL, stdout=self._log,
                                        stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as http:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise ServiceError(f"the cloud exited at start:\n{self.log_tail()}")
                try:
                    health = http.get(f"{self.url}/healthz")
                    if health.status_code == 200 and health.json().get("bridge") == "connected":
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        raise ServiceError(f"the cloud did not become ready within {timeout} s:\n{self.log_tail()}")

    def admin_token(self) -> str:
        return (self.data_dir / "admin.token").read_text().strip()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL: the fault a replica dying mid-rollout is."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        """SIGTERM, SIGKILL after 10 s."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        if self._log is not None:
            self._log.close()
            self._log = None


class ScratchDatabase:
    """A PostgreSQL database of this run's own on the server of ``server_url``."""

    def __init__(self, server_url: str) -> None:
        parts = urlsplit(server_url)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ServiceError(f"--database-url must be postgresql://..., not {server_url!r}")
        self.name = f"tether_fleet_{uuid.uuid4().hex[:10]}"
        self._admin_url = server_url
        # a server on this machine: its processes' CPU can be read in /proc
        self.local = parts.hostname in (None, "", "localhost", "127.0.0.1", "::1")
        self.url = urlunsplit(parts._replace(path=f"/{self.name}"))

    def create(self) -> None:
        try:
            with psycopg.connect(self._admin_url, autocommit=True) as connection:
                connection.execute(f'CREATE DATABASE "{self.name}"')
        except psycopg.Error as exc:
            raise ServiceError(f"cannot create database {self.name}: {exc}") from exc

    def backend_cpu_seconds(self) -> dict[int, float] | None:
        """CPU seconds so far of each server process serving this database (not the
        server's own background writers); None when the server runs on another machine."""
        if not self.local:
            return None
        try:
            with psycopg.connect(self._admin_url, autocommit=True) as connection:  # another database
                pids = [pid for (pid,) in connection.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = %s", (self.name,))]
        except psycopg.Error:  # a figure missing, not a failed run
            return None
        spent: dict[int, float] = {}
        for pid in pids:
            try:
                spent[pid] = sample_process(pid).cpu_seconds
            except OSError:  # gone since, or not in this machine's /proc after all
                continue
        return spent

    def drop(self) -> None:
        try:
            with psycopg.connect(self._admin_url, autocommit=True) as connection:
                connection.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        except psycopg.Error as exc:
            raise ServiceError(f"cannot drop database {self.name}: {exc}") from exc
