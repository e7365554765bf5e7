"""The function proxy: one HTTP endpoint per node through which every invocation passes.

``POST /{app}/{function}`` with any body answers with the function's result (its body and
content type as the runtime gave them). Headers: ``X-Tether-Invoke-Id`` (generated when
absent, always echoed) and ``X-Tether-Timeout`` (seconds; the proxy's default when
absent, capped at its maximum). Failures are ``{"code", "message"}`` with that status:
400 a bad header, 404 no such function, 413 a body over the limit, 502 the runtime failed
(its ``{"type", "message"}`` under ``"error"``), 504 no answer in time. ``GET /healthz``
answers ``{"status": "ok"}``. Listening is on loopback by default (port 50011): the
proxy has no authentication, as the node's apps are what calls it.

The work is ``FunctionCaller``'s; this module is only the HTTP shell around it
(stdlib ``ThreadingHTTPServer``: each request on a thread of its own, so a hung function
holds one thread and the proxy stays up).
"""

from __future__ import annotations

import json
import logging
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from edge_runtime.functions.calling import (
    DEFAULT_TIMEOUT,
    MAX_TIMEOUT,
    FunctionCaller,
    check_invoke_id,
)
from edge_runtime.functions.directory import FunctionDirectory
from edge_runtime.functions.errors import (
    BadInvocation,
    FunctionError,
    PayloadTooLarge,
    ProxyError,
    UnknownFunction,
)
from edge_runtime.functions.runtime import INVOKE_ID_HEADER

log = logging.getLogger(__name__)
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 50011
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
TIMEOUT_HEADER = "X-Tether-Timeout"


def parse_timeout(value: str | None) -> float | None:
    """The ``X-Tether-Timeout`` header: None when absent, else positive finite seconds."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise BadInvocation(f"{TIMEOUT_HEADER} must be a positive number of seconds")
    return seconds


class FunctionProxy:
    """The node's function proxy. ``start()`` binds and serves in a thread; ``stop()`` ends it."""

    def __init__(
        self,
        directory: FunctionDirectory,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        timeout: float = DEFAULT_TIMEOUT,
        max_timeout: float = MAX_TIMEOUT,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        node: str = "",
    ) -> None:
        self.caller = FunctionCaller(directory, timeout=timeout, max_timeout=max_timeout, node=node)
        self.host, self.port = host, port
        self.max_body_bytes = max_body_bytes
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://host:port`` once started (the bound port when started with port 0)."""
        if self._server is None:
            raise ProxyError("the function proxy is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Self:
        if self._server is not None:
            return self
        try:
            server = ThreadingHTTPServer((self.host, self.port), _request_handler(self))
        except OSError as exc:
            raise ProxyError(
                f"the function proxy cannot listen on {self.host}:{self.port}: {exc.strerror}"
            ) from exc
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.2},
            name="tether-function-proxy", daemon=True,
        )  # fmt: skip
        self._thread.start()
        log.info("function proxy listening on %s", self.url)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout)
        self.caller.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _request_handler(proxy: FunctionProxy) -> type[BaseHTTPRequestHandler]:
    class ProxyRequestHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body leave in two writes

        def do_POST(self) -> None:
            invoke_id: str | None = None
            try:
                invoke_id = check_invoke_id(self.headers.get(INVOKE_ID_HEADER))
                parts = self.path.split("?", 1)[0].strip("/").split("/")
                if len(parts) != 2 or not all(parts):
                    raise UnknownFunction("POST /{app}/{function} invokes a function")
                body = self._body()
                reply = proxy.caller.invoke(
                    parts[0],
                    parts[1],
                    body,
                    invoke_id=invoke_id,
                    timeout=parse_timeout(self.headers.get(TIMEOUT_HEADER)),
                    content_type=self.headers.get("Content-Type") or "application/json",
                )
            except FunctionError as exc:
                self._json(exc.code, exc.body(), invoke_id)
                return
            except Exception:  # never let one request take the proxy down
                log.exception("the function proxy failed on %s", self.path)
                self._json(500, {"code": 500, "message": "internal error of the proxy"}, invoke_id)
                return
            self._answer(200, reply.content_type, reply.body, reply.invoke_id)

        def do_GET(self) -> None:
            if self.path == "/healthz":
                self._json(200, {"status": "ok"}, None)
            else:
                body = {"code": 405, "message": "invoke with POST /{app}/{function}"}
                self._json(405, body, None)

        def _body(self) -> bytes:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if length < 0:
                self.close_connection = True
                raise BadInvocation("send the body with a valid Content-Length")
            if length > proxy.max_body_bytes:
                self.close_connection = True  # the unread body must not be taken for a request
                raise PayloadTooLarge(f"body of {length} bytes exceeds {proxy.max_body_bytes}")
            return self.rfile.read(length)

        def _json(self, status: int, body: dict[str, Any], invoke_id: str | None) -> None:
            self._answer(status, "application/json", json.dumps(body).encode(), invoke_id)

        def _answer(self, status: int, kind: str, body: bytes, invoke_id: str | None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            if invoke_id is not None:
                self.send_header(INVOKE_ID_HEADER, invoke_id)
            if self.close_connection:  # say so, or a client reuses the connection and finds it
                self.send_header("Connection", "close")  # closed (seen in CI after a 413)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug(format, *args)

    return ProxyRequestHandler
