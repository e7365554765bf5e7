"""Error codes shared by MQTT rejections and REST errors (DESIGN §6).

A rejection travels as ``{"code", "message", "clientToken"?, "timestamp"}`` on MQTT and
as ``{"code", "message"}`` with the same HTTP status over REST, so both sides raise
one exception type that carries its code:

    Rejection            any refused input; ``code`` is one of ErrorCode
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class ErrorCode(IntEnum):
    BAD_REQUEST = 400
    UNAUTHORIZED = 401
    FORBIDDEN = 403
    NOT_FOUND = 404
    CONFLICT = 409
    TOO_LARGE = 413
    UNSUPPORTED_ENCODING = 415
    TOO_MANY_REQUESTS = 429
    INTERNAL = 500
    UNAVAILABLE = 503


class Rejection(Exception):
    """An input refused with an HTTP-like code and a message a user can act on."""

    def __init__(self, code: ErrorCode | int, message: str) -> None:
        super().__init__(message)
        self.code = ErrorCode(code)
        self.message = message

    def __repr__(self) -> str:
        return f"Rejection({int(self.code)}, {self.message!r})"

    def payload(self, *, timestamp: int, client_token: str | None = None) -> dict[str, Any]:
        """The MQTT rejection document for this error."""
        return error_payload(self.code, self.message, timestamp=timestamp, client_token=client_token)


def error_payload(
    code: ErrorCode | int, message: str, *, timestamp: int, client_token: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"code": int(code), "message": message}
    if client_token is not None:
        body["clientToken"] = client_token
    body["timestamp"] = timestamp
    return body
