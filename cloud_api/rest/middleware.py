"""Refusing request bodies over the size limit before anything parses them (413).

A declared ``Content-Length`` over the limit is answered at once; a body that arrives
without one (chunked) is counted as it streams, and reading past the limit raises
``BodyTooLarge`` inside whatever reads it, which the app's error handler turns into 413.
So no endpoint ever holds more than the limit in memory, whatever a client sends.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from schemas.errors import ErrorCode, Rejection
from schemas.payloads import encode_json


class BodyTooLarge(Rejection):
    def __init__(self, limit: int) -> None:
        super().__init__(ErrorCode.TOO_LARGE, f"request body exceeds the limit of {limit} bytes")


class BodyLimitMiddleware:
    """Pure ASGI middleware: 413 for bodies over ``max_bytes`` (``larger`` raises the limit
    of an exact path, e.g. the upload of agent wheels)."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, larger: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.larger = larger or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.larger.get(scope.get("path", ""), self.max_bytes)
        declared = _content_length(scope)
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            rejection = (
                BodyTooLarge(limit)
                if declared.isdigit()
                else Rejection(ErrorCode.BAD_REQUEST, "Content-Length must be a number of bytes")
            )
            await _reply(send, rejection)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, limited, send)


def _content_length(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            return str(value.decode("latin-1").strip())
    return None


async def _reply(send: Send, rejection: Rejection) -> None:
    body = encode_json({"code": int(rejection.code), "message": rejection.message})
    headers: list[Any] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": int(rejection.code), "headers": headers})
    await send({"type": "http.response.body", "body": body})
