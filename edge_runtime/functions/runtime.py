"""Tether's Python function runtime: one small HTTP server process per function replica.

Run as ``python -m edge_runtime.functions.runtime --code-dir DIR --handler mod.func
--host 127.0.0.1 --port 0 --announce FILE`` (``directory.runtime_command`` builds it for
the native backend; in kube mode a pod of the Tether image runs it on ``0.0.0.0:8080``
without ``--announce``). ``--code-dir`` and ``--handler`` default to
``TETHER_FUNCTION_CODE_DIR`` and ``TETHER_FUNCTION_HANDLER``. It imports ``mod`` from
``DIR`` (a config mounted as a volume, one Python file per key), binds, and announces
``{"url", "pid"}`` in FILE for the proxy; on SIGTERM it stops and removes FILE if it
still names this process. ``GET /healthz`` answers 200 once the handler is loaded and
the server is up: the kube readiness probe.

``POST /`` calls ``handler(event, context)``. The body is parsed as JSON when it is JSON,
else passed as ``bytes`` (empty: ``None``). A JSON-serialisable return is answered 200
``application/json``; ``bytes`` as ``application/octet-stream``. An exception, or a return
that cannot be serialised, is answered 500 ``{"error": {"type", "message"}}`` and its
traceback goes to this process's stderr only. A handler that cannot be imported ends the
process at start with exit code 2 and one line on stderr, which the backend shows as a
crash. ``context`` is a ``FunctionContext``: invoke id, app, function and node, from the
proxy's headers or else the ``TETHER_FUNCTION_*`` / ``TETHER_NODE`` environment.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import signal
import sys
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any

from edge_runtime.functions.directory import (
    APP_ENV,
    CODE_DIR_ENV,
    HANDLER_ENV,
    NAME_ENV,
    write_announcement,
)

log = logging.getLogger("tether.function")
INVOKE_ID_HEADER = "X-Tether-Invoke-Id"
APP_HEADER = "X-Tether-App"
FUNCTION_HEADER = "X-Tether-Function"
NODE_HEADER = "X-Tether-Node"
MAX_BODY_BYTES = 16 * 1024 * 1024

Handler = Callable[[Any, "FunctionContext"], Any]


@dataclass(frozen=True)
class FunctionContext:
    """What a handler learns about the invocation besides its event."""

    invoke_id: str
    app: str
    function: str
    node: str


class LoadError(Exception):
    """The handler could not be imported; the message is the one line printed."""


def load_handler(code_dir: Path, handler: str) -> Handler:
    """Import ``module.function`` with ``code_dir`` first on the path."""
    module_name, _, attribute = handler.rpartition(".")
    if not module_name:
        raise LoadError(f"handler {handler!r} must be 'module.function'")
    sys.path.insert(0, str(code_dir))
    try:
        module = importlib.import_module(module_name)
    except BaseException as exc:  # SyntaxError, ImportError, SystemExit in module code...
        raise LoadError(
            f"cannot import {module_name!r} from {code_dir}: {type(exc).__name__}: {exc}"
        ) from exc
    function: object = getattr(module, attribute, None)
    if not callable(function):
        raise LoadError(f"module {module_name!r} has no function {attribute!r}")
    return function


def decode_event(body: bytes) -> Any:
    """JSON when the body is JSON, else the bytes themselves (empty -> None)."""
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return body


def call(handler: Handler, event: Any, context: FunctionContext) -> tuple[int, str, bytes]:
    """Run the handler: (status, content type, body). Never raises."""
    try:
        result = handler(event, context)
        if isinstance(result, bytes | bytearray | memoryview):
            return 200, "application/octet-stream", bytes(result)
        try:
            body = json.dumps(result, allow_nan=False).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise TypeError(f"the result is not JSON-serialisable: {exc}") from exc
        return 200, "application/json", body
    except Exception as exc:
        log.exception("invocation %s of %s failed", context.invoke_id, context.function)
        error = {"type": type(exc).__name__, "message": str(exc)}
        return 500, "application/json", json.dumps({"error": error}).encode("utf-8")


def _make_request_handler(handler: Handler) -> type[BaseHTTPRequestHandler]:
    defaults = (
        os.environ.get(APP_ENV, ""),
        os.environ.get(NAME_ENV, ""),
        os.environ.get("TETHER_NODE", ""),
    )

    class RequestHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: the proxy reuses connections
        disable_nagle_algorithm = True  # headers and body leave in two writes

        def do_GET(self) -> None:
            if self.path.split("?")[0] == "/healthz":
                self._answer(200, "application/json", b'{"status":"ok"}')
            else:
                self._answer(404, "application/json",
                             b'{"error":{"type":"NotFound","message":"POST / to invoke"}}')

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length < 0 or length > MAX_BODY_BYTES:
                self._answer(413, "application/json", b'{"error":{"type":"TooLarge","message":""}}')
                return
            body = self.rfile.read(length)
            context = FunctionContext(
                invoke_id=self.headers.get(INVOKE_ID_HEADER) or uuid.uuid4().hex,
                app=self.headers.get(APP_HEADER) or defaults[0],
                function=self.headers.get(FUNCTION_HEADER) or defaults[1],
                node=self.headers.get(NODE_HEADER) or defaults[2],
            )
            self._answer(*call(handler, decode_event(body), context))

        def _answer(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug(format, *args)

    return RequestHandler


def serve(handler: Handler, *, host: str, port: int, announce: Path | None) -> None:
    """Serve ``handler`` until SIGTERM or SIGINT; announce while serving."""
    server = ThreadingHTTPServer((host, port), _make_request_handler(handler))
    server.daemon_threads = True  # a hung handler must not block the exit
    bound_host, bound_port = server.server_address[:2]
    url = f"http://{bound_host!s}:{bound_port}"

    def stop(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if announce is not None:
        write_announcement(announce, url=url, pid=os.getpid())
    log.info("serving %s on %s", handler, url)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        if announce is not None:
            _withdraw(announce)


def _withdraw(announce: Path) -> None:
    """Remove the announcement unless a newer runtime has replaced it."""
    try:
        if json.loads(announce.read_bytes()).get("pid") == os.getpid():
            announce.unlink()
    except (OSError, ValueError, AttributeError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge_runtime.functions.runtime")
    code_dir, handler_name = os.environ.get(CODE_DIR_ENV), os.environ.get(HANDLER_ENV)
    parser.add_argument("--code-dir", type=Path, default=code_dir, required=not code_dir,
                        help=f"default: ${CODE_DIR_ENV}")
    parser.add_argument("--handler", default=handler_name, required=not handler_name,
                        help=f"module.function (default: ${HANDLER_ENV})")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--announce", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        handler = load_handler(args.code_dir, args.handler)
    except LoadError as exc:
        print(f"tether function runtime: {exc}", file=sys.stderr)
        return 2
    try:
        serve(handler, host=args.host, port=args.port, announce=args.announce)
    except OSError as exc:
        where = f"{args.host}:{args.port}"
        print(f"tether function runtime: cannot serve on {where}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
