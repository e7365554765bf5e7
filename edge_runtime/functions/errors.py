"""The function proxy's errors, each carrying the HTTP-like code it is answered with.

Callers of the proxy (HTTP clients and MQTT invokers) see the same ``{"code", "message"}``
body, so every failure of an invocation is one exception that knows its code; the HTTP
proxy and the MQTT invoker both render it without a mapping table. The tree hangs under
the agent's ``EdgeError`` so the CLI still catches one base::

    EdgeError (edge_runtime.errors)
     └── FunctionError          an invocation that did not produce a result; ``code``
          ├── BadInvocation     400  a malformed request: bad timeout header, bad names
          ├── UnknownFunction   404  no live instance of app/function is announced
          ├── PayloadTooLarge   413  the request body exceeds the proxy's limit
          ├── TooManyInFlight   429  the invoker's queue is full; retry shortly
          ├── RuntimeFailed     502  the runtime raised, returned garbage or refused us;
          │                          ``error`` holds the runtime's ``{"type", "message"}``
          └── InvocationTimeout 504  no answer within the invocation's timeout
     └── ProxyError             the proxy cannot listen (port in use, bad host)
"""

from __future__ import annotations

from typing import Any

from edge_runtime.errors import EdgeError


class FunctionError(EdgeError):
    """An invocation that failed; ``code`` is the HTTP status it is answered with."""

    code = 500

    def __init__(self, message: str, *, error: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.error = error

    def body(self) -> dict[str, Any]:
        """``{"code", "message"}`` plus the runtime's ``error`` when there is one."""
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.error is not None:
            body["error"] = self.error
        return body


class BadInvocation(FunctionError):
    code = 400


class UnknownFunction(FunctionError):
    code = 404


class PayloadTooLarge(FunctionError):
    code = 413


class TooManyInFlight(FunctionError):
    code = 429


class RuntimeFailed(FunctionError):
    code = 502


class InvocationTimeout(FunctionError):
    code = 504


class ProxyError(EdgeError):
    """The function proxy could not start: a one-line reason."""
