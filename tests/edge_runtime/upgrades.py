"""Real agent versions for self-upgrade tests: wheels, a venv, a server and a supervisor.

The wheels are the project's own code packed under other versions
(``cloud_api.packaging.pack_running``); ``BAD`` has a bug that stops it from ever
reporting, so it fails its health check. The venv of version ``A`` is built once per
session (``python -m venv`` + ``pip install --no-index``); its dependencies (and pip) come
from the test's own venv through a ``.pth`` file, so nothing is downloaded. ``Supervisor`` plays
systemd's ``Restart=always``.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import site
import subprocess
import sys
import threading
import time
from pathlib import Path

from cloud_api.packaging import pack_running

A, B, BAD = "1.0.0", "1.1.0", "1.1.1"
_BUG = (b"    def _send_report(self) -> None:\n",
        b"    def _send_report(self) -> None:\n        return  # the bug\n")


def build_versions(directory: Path) -> dict[str, Path]:
    """Wheels of A, B and BAD in ``directory``, and the venv of A beside them."""
    syncing = (Path(__file__).parents[2] / "edge_runtime" / "syncing.py").read_bytes()
    assert _BUG[0] in syncing
    wheels = {A: pack_running(directory, version=A), B: pack_running(directory, version=B),
              BAD: pack_running(directory, version=BAD,
                                patch={"edge_runtime/syncing.py": syncing.replace(*_BUG)})}
    venv = directory / "venv-a"
    # no pip of its own (ensurepip takes seconds): the .pth below brings the test venv's
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    purelib = subprocess.run([str(venv / "bin" / "python"), "-c",
                              "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    (Path(purelib) / "deps.pth").write_text(f"{site.getsitepackages()[0]}\n")
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                    "--no-index", "--disable-pip-version-check", str(wheels[A])],
                   check=True, env=clean_env())
    return {**{version: path for version, path in wheels.items()}, "venv": venv}


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a node's processes: no PYTHONPATH (it would run this checkout)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "VIRTUAL_ENV", "TETHER_EDGE_"))}
    env.update(extra)
    return env


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class WheelServer:
    """Serves a directory over HTTP on loopback, port 0 (the cloud's wheel endpoint)."""

    def __init__(self, directory: Path) -> None:
        handler = functools.partial(_Quiet, directory=str(directory))
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class Supervisor:
    """Runs ``argv`` and starts it again whenever it exits, like systemd's Restart=always."""

    def __init__(self, argv: list[str], *, env: dict[str, str], log: Path) -> None:
        self.argv, self.env, self.log = argv, env, log
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            with open(self.log, "ab") as output:
                self.process = subprocess.Popen(self.argv, env=self.env, stdout=output,
                                                stderr=subprocess.STDOUT)
            self.starts += 1
            self.process.wait()
            time.sleep(0.2)

    def stop(self) -> None:
        self._stop.set()
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self._thread.join(5)
