"""A private Mosquitto process on a free loopback port, for benchmarks and fault tests.

The machine's own Mosquitto is shared (and runs without ``set_tcp_nodelay``, which adds
about 40 ms to every hop through Nagle's algorithm), and tests may not restart it. This
starts one of our own with the options production needs for latency, and can stop and
restart it on the same port. ``running_mosquitto`` runs one with a configuration of the
caller's (``tether broker mosquitto-config``'s, in the tests that prove it).
"""

from __future__ import annotations

import resource
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Self


def mosquitto_binary() -> str | None:
    """Path of the mosquitto broker binary (Debian puts it in /usr/sbin), or None."""
    found = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    return found if Path(found).exists() else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def raise_nofile(wanted: int) -> int:
    """Raise this process's open-file limit to ``wanted`` (the hard limit too, where
    allowed: root); returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(hard, wanted)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def start_mosquitto(
    binary: str, config: Path, port: int, *, timeout: float = 10.0, nofile: int | None = None
) -> subprocess.Popen[bytes]:
    """``mosquitto -c config``, once it accepts connections on ``port``; ``RuntimeError``
    with its own words (and the configuration) if it exits or never listens. ``nofile``
    raises its open-file limit (a socket per client) before it accepts any."""
    # The child inherits this process's limit: raise ours first. prlimit on the child only
    # where that was not enough -- it races with Mosquitto dropping root for its own user,
    # after which reading its limits fails with EPERM.
    inherited = raise_nofile(nofile) if nofile is not None else None
    process = subprocess.Popen(
        [binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    if nofile is not None and inherited is not None and inherited < nofile:
        try:  # prlimit, not preexec_fn: that one is unsafe in a threaded parent
            _, hard = resource.prlimit(process.pid, resource.RLIMIT_NOFILE)
            resource.prlimit(process.pid, resource.RLIMIT_NOFILE, (nofile, max(hard, nofile)))
        except PermissionError:
            pass  # it already runs as its own user; it keeps the limit it inherited
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            error = process.stderr.read().decode(errors="replace") if process.stderr else ""
            stop_mosquitto(process)
            raise RuntimeError(
                f"mosquitto exited at start: {error.strip()}\n{config.read_text()}"
            )
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            time.sleep(0.02)
    stop_mosquitto(process)
    raise RuntimeError(f"mosquitto did not listen on port {port} within {timeout} s")


def stop_mosquitto(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, SIGKILL after 5 s; closes its stderr pipe."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stderr is not None:
        process.stderr.close()


@contextmanager
def running_mosquitto(config: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """A mosquitto running ``config`` (listening on ``port``) for the ``with`` block."""
    binary = mosquitto_binary()
    if binary is None:
        raise FileNotFoundError("mosquitto is not installed: apt-get install mosquitto")
    process = start_mosquitto(binary, config, port)
    try:
        yield process
    finally:
        stop_mosquitto(process)


class PrivateMosquitto:
    """``mosquitto -c`` with anonymous access on 127.0.0.1 (local benchmarks and tests only).

    For a fleet: ``nofile`` raises its open-file limit, ``max_connections`` lifts the cap
    on clients (-1: none), and ``max_queued_messages``/``max_inflight_messages`` set the
    per-client QoS 1 window and queue (Mosquitto's defaults: 20 in flight, 1000 queued,
    beyond which it drops QoS 1 messages).
    """

    def __init__(
        self, *, port: int | None = None, nodelay: bool = True, nofile: int | None = None,
        max_connections: int | None = None, max_queued_messages: int | None = None,
        max_inflight_messages: int | None = None,
    ) -> None:
        binary = mosquitto_binary()
        if binary is None:
            raise FileNotFoundError("mosquitto is not installed: apt-get install mosquitto")
        self.binary = binary
        self.port = port or _free_port()
        self.nodelay = nodelay
        self.nofile = nofile
        self._dir = tempfile.TemporaryDirectory(prefix="tether-mosquitto-")
        self.config_path = Path(self._dir.name) / "mosquitto.conf"
        lines = [f"listener {self.port} 127.0.0.1"]
        if max_connections is not None:
            lines.append(f"max_connections {max_connections}")  # a listener option
        lines += [
            "allow_anonymous true",
            "persistence false",
            f"set_tcp_nodelay {'true' if nodelay else 'false'}",
            "log_dest none",
        ]
        if max_queued_messages is not None:
            lines.append(f"max_queued_messages {max_queued_messages}")
        if max_inflight_messages is not None:
            lines.append(f"max_inflight_messages {max_inflight_messages}")
        self.config_path.write_text("\n".join(lines) + "\n")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 10.0) -> Self:
        self.process = start_mosquitto(self.binary, self.config_path, self.port, timeout=timeout,
                                       nofile=self.nofile)
        return self

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            stop_mosquitto(process)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
