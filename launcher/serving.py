"""Runs an ASGI app with uvicorn in a background thread on a socket bound beforehand.

``tether up``, the benchmarks and the end-to-end tests serve the cloud API next to the
broker and the edge in one process; ``cloud_api.runtime.bind_http`` binds the socket
(port 0, a one-line error when taken) and this runs uvicorn on it without owning the
main thread or its signals.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn

from cloud_api.errors import CloudError
from cloud_api.runtime import bind_http


def port_is_free(host: str, port: int) -> bool:
    try:
        bind_http(host, port).close()
    except CloudError:
        return False
    return True


class BackgroundServer:
    """uvicorn serving ``app`` on ``sock`` in a daemon thread until ``stop()``."""

    def __init__(self, app: Any, sock: socket.socket, *, log_level: str = "warning") -> None:
        self.sock = sock
        host, port = sock.getsockname()[:2]
        self.url = f"http://{host}:{port}"
        self.port = int(port)
        config = uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="tether-http", daemon=True)

    def _run(self) -> None:
        self._server.run(sockets=[self.sock])

    def start(self, *, timeout: float = 10.0) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the HTTP server on {self.url} did not start")
            time.sleep(0.01)
        return self

    def stop(self, *, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)
        self.sock.close()
