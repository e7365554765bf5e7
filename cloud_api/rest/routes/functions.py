"""``POST .../nodes/{node}/functions/{app}/{function}:invoke``: call a function on a node.

The body is the payload (any JSON; empty means ``null``), relayed over MQTT by
``FunctionRelay``. The answer is the function's result as its body (JSON, or the bytes
of a bytes result as ``application/octet-stream``) with ``X-Tether-Invoke-Id``; a
function's failure is the node's ``{"code", "message"}`` with that status (404, 502,
504...). Query ``timeout`` (seconds, capped) bounds the wait: past it, 504, whether the
node is slow or unreachable. A node the cloud knows is offline is not invoked: 503 at
once, with when it was last seen and ``Retry-After``. Too many in flight: 429. Invoking
needs write access.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Response
from fastapi.responses import JSONResponse

from cloud_api.mqtt.functions import check_invoke_id, refuse_if_offline
from cloud_api.mqtt.payloads import decode_payload
from cloud_api.rest.deps import ContextDep, CurrentToken, PublisherDep, RawBody, SessionDep
from cloud_api.services.nodes import get_node
from cloud_api.services.tokens import authorize
from schemas.names import validate_name
from schemas.payloads import encode_json

router = APIRouter(prefix="/v1/namespaces/{namespace}/nodes/{node}/functions", tags=["functions"])
INVOKE_ID_HEADER = "X-Tether-Invoke-Id"


@dataclass(frozen=True)
class Liveness:
    """What the store says of the node: its name and its last status."""

    name: str
    online: bool
    last_seen: int | None


def existing_node(
    token: CurrentToken, namespace: str, node: str, session: SessionDep
) -> Liveness:
    """401/403 first, then 404 for an unknown node (sync: runs on the thread pool)."""
    authorize(token, namespace=namespace, write=True)
    row = get_node(session, namespace, node)
    return Liveness(row.name, online=row.online, last_seen=row.last_seen)


@router.post("/{app}/{function}:invoke")
async def invoke(
    namespace: str,
    target: Annotated[Liveness, Depends(existing_node)],
    app: str,
    function: str,
    body: RawBody,
    context: ContextDep,
    publisher: PublisherDep,
    timeout: Annotated[float | None, Query(description="seconds to wait; capped")] = None,
    invoke_id: Annotated[str | None, Header(alias=INVOKE_ID_HEADER)] = None,
) -> Response:
    relay = context.functions
    payload = decode_payload(body, limits=context.settings.limits) if body.strip() else None
    seconds = relay.bounded_timeout(timeout)
    invoke_id = check_invoke_id(invoke_id)
    validate_name(app, kind="app name")
    validate_name(function, kind="function name")
    node = target.name  # every input checked (400) before the node's liveness (503)
    refuse_if_offline(namespace, node, online=target.online, last_seen=target.last_seen,
                      now=context.clock())
    invoke_id, pending = relay.submit(
        publisher,
        topics=context.settings.topics,
        namespace=namespace,
        node=node,
        app=app,
        function=function,
        payload=payload,
        timeout=seconds,
        invoke_id=invoke_id,
    )
    headers = {INVOKE_ID_HEADER: invoke_id}
    try:
        outcome = await asyncio.wait_for(asyncio.wrap_future(pending), seconds)
    except TimeoutError:
        message = f"no result from {namespace}/{node} within {seconds:g} s (is the node online?)"
        return JSONResponse({"code": 504, "message": message}, status_code=504, headers=headers)
    finally:
        relay.forget(invoke_id)
    if outcome.error is not None:
        return JSONResponse(outcome.error, status_code=outcome.error["code"], headers=headers)
    if outcome.encoding == "base64":
        try:
            data = base64.b64decode(str(outcome.result), validate=True)
        except binascii.Error:
            message = "the node sent a malformed base64 result"
            return JSONResponse({"code": 502, "message": message}, status_code=502, headers=headers)
        return Response(data, media_type="application/octet-stream", headers=headers)
    return Response(encode_json(outcome.result), media_type="application/json", headers=headers)
