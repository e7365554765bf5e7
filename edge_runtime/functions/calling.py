"""Calling a function: pick an instance, POST to its runtime, turn the outcome into a result.

``FunctionCaller.invoke`` is what both front doors use, the HTTP proxy (``proxy.py``) and
the MQTT invoker (``invoking.py``): it asks the ``FunctionDirectory`` for the live
instances (round robin), tries them in that order while they refuse connections (a
replica that just died), and maps what happens to the error tree of ``errors.py``: none
announced 404, the runtime's own error or a broken answer 502, no answer in time 504.

Connections to runtimes are kept alive in a small pool per instance URL: a fresh TCP
connection per call would cost more than a trivial function does. A request is never
sent twice once a runtime may have seen it, except on an idle pooled connection that
turns out closed (the runtime was replaced), which is retried once on a fresh one.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from edge_runtime.functions.directory import FunctionDirectory, Instance
from edge_runtime.functions.errors import (
    BadInvocation,
    InvocationTimeout,
    RuntimeFailed,
    UnknownFunction,
)
from edge_runtime.functions.runtime import (
    APP_HEADER,
    FUNCTION_HEADER,
    INVOKE_ID_HEADER,
    NODE_HEADER,
)

DEFAULT_TIMEOUT = 30.0
MAX_TIMEOUT = 300.0
MAX_INVOKE_ID = 64
IDLE_PER_INSTANCE = 16
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


@dataclass(frozen=True)
class Reply:
    """A function's result: the runtime's body and content type, with the invoke id."""

    invoke_id: str
    content_type: str
    body: bytes

    @property
    def is_json(self) -> bool:
        return self.content_type.startswith("application/json")


def check_invoke_id(value: str | None) -> str:
    """The caller's invoke id if it is sane (printable ASCII, <= 64), else a new one."""
    if value is None or value == "":
        return uuid.uuid4().hex
    if len(value) > MAX_INVOKE_ID or not value.isascii() or not value.isprintable():
        raise BadInvocation(f"invoke id must be 1-{MAX_INVOKE_ID} printable ASCII characters")
    return value


class FunctionCaller:
    """Invokes functions announced in ``directory``. Thread-safe."""

    def __init__(
        self,
        directory: FunctionDirectory,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_timeout: float = MAX_TIMEOUT,
        node: str = "",
    ) -> None:
        if not 0 < timeout <= max_timeout:
            raise ValueError("need 0 < timeout <= max_timeout")
        self.directory = directory
        self.timeout = timeout
        self.max_timeout = max_timeout
        self.node = node
        self._lock = threading.Lock()
        self._idle: dict[str, list[http.client.HTTPConnection]] = {}

    def bounded_timeout(self, requested: float | None) -> float:
        """The default when None; else ``requested`` capped at ``max_timeout``."""
        if requested is None:
            return self.timeout
        if not requested > 0:  # also refuses NaN
            raise BadInvocation("timeout must be a positive number of seconds")
        return min(requested, self.max_timeout)

    def invoke(
        self,
        app: str,
        function: str,
        body: bytes,
        *,
        invoke_id: str | None = None,
        timeout: float | None = None,
        content_type: str = "application/json",
    ) -> Reply:
        """Call ``app/function`` with ``body``; raises a ``FunctionError`` on failure."""
        invoke_id = check_invoke_id(invoke_id)
        deadline = time.monotonic() + self.bounded_timeout(timeout)
        instances = self.directory.pick(app, function)
        if not instances:
            raise UnknownFunction(f"no function {app}/{function} is running on this node")
        for instance in instances:
            try:
                return self._post(instance, body, invoke_id, content_type, deadline)
            except ConnectionRefusedError:
                continue  # died since it announced itself: try the next replica
        raise RuntimeFailed(f"every instance of {app}/{function} refused the connection")

    def close(self) -> None:
        """Close the pooled connections."""
        with self._lock:
            pools, self._idle = self._idle, {}
        for connections in pools.values():
            for connection in connections:
                connection.close()

    # -- one request --------------------------------------------------------------------
    def _post(
        self, instance: Instance, body: bytes, invoke_id: str, content_type: str, deadline: float
    ) -> Reply:
        headers = {
            "Content-Type": content_type,
            INVOKE_ID_HEADER: invoke_id,
            APP_HEADER: instance.app,
            FUNCTION_HEADER: instance.function,
            NODE_HEADER: self.node,
        }
        name = f"{instance.app}/{instance.function}"
        connection, was_idle = self._open(instance.url, deadline, reuse=True)
        while True:
            try:
                connection.request("POST", "/", body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
                break
            except _STALE:
                connection.close()
                if not was_idle:
                    raise RuntimeFailed(f"the runtime of {name} closed the connection") from None
                # the runtime closed the idle connection (it was replaced): once more, fresh
                connection, was_idle = self._open(instance.url, deadline, reuse=False)
            except TimeoutError as exc:
                connection.close()  # the late answer must not reach the next caller
                raise InvocationTimeout(f"{name} did not answer in time") from exc
            except ConnectionRefusedError:
                connection.close()
                raise
            except OSError as exc:
                connection.close()
                raise RuntimeFailed(f"cannot reach the runtime of {name}: {exc}") from exc
        if response.will_close:
            connection.close()
        else:
            self._give_back(instance.url, connection)
        if response.status == 200:
            kind = response.getheader("Content-Type") or "application/octet-stream"
            return Reply(invoke_id, kind, data)
        raise _failure(name, response.status, data)

    def _open(
        self, url: str, deadline: float, *, reuse: bool
    ) -> tuple[http.client.HTTPConnection, bool]:
        """An idle pooled connection (True) or a new one (False), timing out at deadline."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise InvocationTimeout("the invocation timed out before it was sent")
        connection = self._take(url) if reuse else None
        if connection is not None:
            connection.sock.settimeout(remaining)
            return connection, True
        parts = urlsplit(url)
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=remaining)
        try:
            connection.connect()
        except TimeoutError as exc:
            raise InvocationTimeout(f"cannot connect to {url} in time") from exc
        except ConnectionRefusedError:
            raise  # the caller tries the next replica
        except OSError as exc:
            raise RuntimeFailed(f"cannot connect to {url}: {exc}") from exc
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection, False

    def _take(self, url: str) -> http.client.HTTPConnection | None:
        with self._lock:
            idle = self._idle.get(url)
            return idle.pop() if idle else None

    def _give_back(self, url: str, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(url, [])
            if len(idle) < IDLE_PER_INSTANCE:
                idle.append(connection)
                return
        connection.close()


def _failure(name: str, status: int, data: bytes) -> RuntimeFailed:
    """The runtime answered but not with a result: its ``{"error": ...}`` if it sent one."""
    try:
        error = json.loads(data).get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, dict) and isinstance(error.get("type"), str):
        detail: dict[str, Any] = {"type": error["type"], "message": str(error.get("message", ""))}
        return RuntimeFailed(f"{name} failed: {detail['type']}: {detail['message']}", error=detail)
    return RuntimeFailed(f"the runtime of {name} answered {status}")
