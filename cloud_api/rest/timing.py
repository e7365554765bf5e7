"""Timing every REST request into ``tether_http_request_duration_seconds``.

Why it exists: an operator graphs latency by endpoint, so the label is the route's
template (``/v1/namespaces/{namespace}/nodes/{node}``), never the path itself (one
series per node would drown Prometheus); requests no route matched share ``<unmatched>``.
Pure ASGI, so it costs one clock read and one histogram observation per request.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cloud_api.metrics import Metrics

UNMATCHED = "<unmatched>"


class RequestTimingMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        code = 500

        async def sending(message: Message) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED
            self.metrics.observe_request(route=template, method=scope["method"], code=code,
                                         seconds=time.perf_counter() - started)
