"""``GET .../nodes/{node}/logs``: an app's output, read on its node, relayed over MQTT.

``?app=APP[&service=SVC][&tail=N][&follow=true]``. Without ``follow``: 200
``{"node", "app", "service", "lines": [...], "truncated": bool}`` once the node sent its
whole tail (the last ``tail`` lines, 100 by default, at most 10,000, of each instance; at
most 1 MiB), 504 after ``logs_timeout_seconds`` (10 s) without it. With ``follow=true``: a
``text/event-stream`` whose events carry ``{"lines": [...]}`` (``"truncated": true`` when
the node skipped lines), first the tail, then new lines as they are written; the stream
renews its lease on the node every ``logs_renew_seconds`` (5 s; the lease is 3 times that)
and closes it when the client goes away; a comment line keeps the connection alive.

A node the cloud knows is offline: 503 ``{"code": "NodeOffline", "message", "lastSeen"}``
at once, nothing sent. What the node refuses comes back with its code (404: no such app
on the node; 429: the node serves 8 streams already). Reading logs needs read access to
the namespace (403 otherwise; 404 for an unknown node). Unknown query parameters: 400.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from cloud_api.errors import CloudError, NodeOffline
from cloud_api.mqtt.functions import OFFLINE_RETRY_AFTER, refuse_if_offline
from cloud_api.mqtt.log_relay import LogStream
from cloud_api.mqtt.transport import Publisher
from cloud_api.rest.context import Context
from cloud_api.rest.deps import ContextDep, CurrentToken, PublisherDep, SessionDep
from cloud_api.services.nodes import get_node
from cloud_api.services.tokens import authorize
from schemas.errors import ErrorCode
from schemas.logs import DEFAULT_TAIL, check_tail
from schemas.names import validate_name
from schemas.payloads import encode_json

router = APIRouter(prefix="/v1/namespaces/{namespace}/nodes/{node}", tags=["logs"])
PARAMETERS = frozenset({"app", "service", "tail", "follow"})


@dataclass(frozen=True)
class Target:
    name: str
    online: bool
    last_seen: int | None


def readable_node(
    token: CurrentToken, namespace: str, node: str, session: SessionDep, request: Request
) -> Target:
    """400 for unknown parameters, 401/403, then 404 for an unknown node."""
    refuse_unknown_parameters(request, PARAMETERS)
    authorize(token, namespace=namespace)
    row = get_node(session, namespace, node)
    return Target(row.name, row.online, row.last_seen)


def refuse_unknown_parameters(request: Request, allowed: frozenset[str]) -> None:
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        raise CloudError(f"unknown query parameter(s) {', '.join(unknown)}: use "
                         f"{', '.join(sorted(allowed))}", code=ErrorCode.BAD_REQUEST)


def offline_response(namespace: str, target: Target, now: float) -> JSONResponse | None:
    """The contract's 503 for a node the cloud knows is offline, else None."""
    try:
        refuse_if_offline(namespace, target.name, online=target.online,
                          last_seen=target.last_seen, now=now)
    except NodeOffline as exc:
        seen = target.last_seen
        body = {"code": "NodeOffline", "message": exc.message,
                "lastSeen": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seen)) if seen else None}
        return JSONResponse(body, status_code=503,
                            headers={"Retry-After": str(int(OFFLINE_RETRY_AFTER))})
    return None


@router.get("/logs", response_model=None)
async def read_logs(
    namespace: str,
    target: Annotated[Target, Depends(readable_node)],
    context: ContextDep,
    publisher: PublisherDep,
    app: Annotated[str | None, Query(description="the app whose output to read (required)")] = None,
    service: Annotated[str | None, Query(description="one service of the app")] = None,
    tail: Annotated[int, Query(description="last lines of each instance (max 10000)")] = DEFAULT_TAIL,
    follow: Annotated[bool, Query(description="keep streaming new lines (SSE)")] = False,
) -> Response:
    if app is None:  # checked here, after the node (401, 403, 404), as every input is
        raise CloudError("name the app: ?app=APP", code=ErrorCode.BAD_REQUEST)
    validate_name(app, kind="app name")
    if service is not None:
        validate_name(service, kind="service name")
    check_tail(tail)
    refused = offline_response(namespace, target, context.clock())
    if refused is not None:
        return refused
    stream = context.logs.open(
        publisher, topics=context.settings.topics, namespace=namespace, node=target.name,
        app=app, service=service, tail=tail, follow=follow,
        lease=3 * context.settings.logs_renew_seconds,
    )
    if follow:
        return StreamingResponse(_follow(context, publisher, stream), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})
    return await _collect(context, publisher, stream, target=target.name, app=app, service=service)


async def _collect(
    context: Context, publisher: Publisher, stream: LogStream, *, target: str, app: str, service: str | None
) -> Response:
    seconds = context.settings.logs_timeout_seconds
    deadline = asyncio.get_running_loop().time() + seconds
    lines: list[str] = []
    truncated, done = False, False
    try:
        while not done:
            left = deadline - asyncio.get_running_loop().time()
            try:
                chunk = await asyncio.wait_for(stream.chunks.get(), max(0.0, left))
            except TimeoutError:
                message = (f"no log from {stream.namespace}/{target} within {seconds:g} s "
                           "(is the node online?)")
                return JSONResponse({"code": 504, "message": message}, status_code=504)
            if chunk.error is not None:
                return JSONResponse(chunk.error, status_code=chunk.error["code"])
            lines += chunk.lines
            truncated |= chunk.truncated
            done = chunk.done
    finally:
        if done:
            context.logs.forget(stream)
        else:
            context.logs.close(publisher, stream)
    truncated |= stream.dropped > 0
    return JSONResponse({"node": target, "app": app, "service": service, "lines": lines,
                         "truncated": truncated})


async def _follow(context: Context, publisher: Publisher, stream: LogStream) -> AsyncIterator[bytes]:
    """Server-sent events until the node ends the stream or the client goes away."""
    loop = asyncio.get_running_loop()
    every = context.settings.logs_renew_seconds
    renew_at = loop.time() + every
    dropped = 0
    try:
        while True:
            try:
                chunk = await asyncio.wait_for(stream.chunks.get(), max(0.0, renew_at - loop.time()))
            except TimeoutError:
                context.logs.renew(publisher, stream)
                renew_at = loop.time() + every
                yield b": keep-alive\n\n"
                continue
            if chunk.error is not None:
                yield b"event: error\ndata: " + encode_json(chunk.error) + b"\n\n"
                return
            event: dict[str, Any] = {"lines": list(chunk.lines)}
            if chunk.truncated or stream.dropped > dropped:
                event["truncated"] = True
                dropped = stream.dropped
            if chunk.lines or event.get("truncated"):
                yield b"data: " + encode_json(event) + b"\n\n"
            if chunk.done:
                yield b"event: end\ndata: {}\n\n"
                return
    finally:
        context.logs.close(publisher, stream)
