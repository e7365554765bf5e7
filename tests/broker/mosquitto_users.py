"""Running a generated Mosquitto configuration as a given user, and places that user reaches.

``launcher.mosquitto.running_mosquitto`` runs Mosquitto as whoever runs the tests; these
start it as its own ``mosquitto`` user, as a packaged Mosquitto runs, to prove that the
files ``tether broker mosquitto-config`` names are readable by it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from broker.mosquitto_files import DEFAULT_USER, Account
from launcher.mosquitto import mosquitto_binary, stop_mosquitto


def as_ourselves() -> list[str]:
    """``--user`` flags for a configuration that Mosquitto runs as the tests' own user (our
    temporary directories are private to us)."""
    return ["--user", pwd.getpwuid(os.geteuid()).pw_name]


def mosquitto_account() -> Account:
    """The ``mosquitto`` account, or skip (with the reason) where the test cannot use it."""
    if mosquitto_binary() is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    account = Account.lookup(DEFAULT_USER)
    if account is None:
        pytest.skip(f"there is no {DEFAULT_USER!r} user on this machine")
    if os.geteuid() != 0:
        pytest.skip(f"starting a process as {DEFAULT_USER!r} needs root")
    return account


@contextmanager
def reachable_dir() -> Iterator[Path]:
    """A fresh directory under the system's temp dir, mode 0755 (pytest's are 0700)."""
    path = Path(tempfile.mkdtemp(prefix="tether-mosquitto-"))
    try:
        path.chmod(0o755)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def running_as(account: Account, config: Path, port: int, *, timeout: float = 10.0
               ) -> Iterator[subprocess.Popen[bytes]]:
    """``mosquitto -c config`` started as ``account`` (as ``runuser -u`` would), once it
    listens on ``port``; if it exits at start, ``RuntimeError`` with its own words (a
    "Permission denied" shows there)."""
    binary = mosquitto_binary()
    assert binary is not None
    process = subprocess.Popen([binary, "-c", str(config)], user=account.uid,
                               group=account.gid, extra_groups=sorted(account.groups),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + timeout
        while not _listening(port):
            if process.poll() is not None:
                error = process.stderr.read().decode(errors="replace") if process.stderr else ""
                raise RuntimeError(f"mosquitto exited at start: {error.strip()}")
            assert time.monotonic() < deadline, f"mosquitto did not listen on {port}"
            time.sleep(0.02)
        yield process
    finally:
        stop_mosquitto(process)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True
