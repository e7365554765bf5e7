"""Invocations over MQTT: ``functions/{app}/{function}/invoke`` in, ``.../result`` out.

Request (JSON, on ``{root}/{ns}/{node}/functions/{app}/{function}/invoke``)::

    {"invokeId": "<1-64 printable ASCII>", "payload": <any JSON, default null>,
     "timeout"?: <seconds, capped by the proxy's maximum>}

Result (on the same path ending in ``/result``)::

    {"invokeId": "...", "result": <the function's JSON result>}
    {"invokeId": "...", "result": "<base64>", "encoding": "base64"}   (a bytes result)
    {"invokeId": "...", "error": {"code": 400|404|429|502|504, "message": "...",
                                  "error"?: {"type", "message"}}}      (502: the runtime's)

The payload reaches the function as its event (JSON). A request without a usable
``invokeId`` cannot be answered (no one could match the answer) and is logged and dropped.

``FunctionInvoker.handle`` is the logic, synchronous and testable with a fake caller and a
list as publisher. ``submit`` is what the MQTT link calls from its network thread: it
queues the call on a small worker pool and answers 429 at once when too many are pending,
so a slow function never stalls the node's shadow traffic.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from edge_runtime.functions.calling import Reply, check_invoke_id
from edge_runtime.functions.errors import BadInvocation, FunctionError, TooManyInFlight
from schemas.errors import Rejection
from schemas.payloads import decode_json, encode_json
from schemas.topics import Suffix, TopicScheme

log = logging.getLogger(__name__)
MAX_REQUEST_BYTES = 1024 * 1024
Publish = Callable[[str, bytes], None]  # (full topic, payload), QoS 1


class Invoke(Protocol):
    """What the invoker calls: ``FunctionCaller.invoke`` (or a fake in tests)."""

    def invoke(
        self, app: str, function: str, body: bytes, *,
        invoke_id: str | None = None, timeout: float | None = None,
        content_type: str = "application/json",
    ) -> Reply: ...  # fmt: skip


@dataclass(frozen=True)
class InvokeRequest:
    invoke_id: str
    payload: Any
    timeout: float | None


def parse_invoke_request(raw: bytes, *, max_bytes: int = MAX_REQUEST_BYTES) -> InvokeRequest:
    """Check a request's shape; ``BadInvocation`` (400) when it is not the contract's."""
    try:
        body = decode_json(raw, max_bytes=max_bytes)
    except Rejection as exc:
        raise BadInvocation(exc.message) from exc
    if not isinstance(body, dict) or not isinstance(body.get("invokeId"), str):
        raise BadInvocation('an invoke request is {"invokeId": "...", "payload": ...}')
    invoke_id = check_invoke_id(body["invokeId"] or None)
    unknown = sorted(set(body) - {"invokeId", "payload", "timeout"})
    if unknown:
        raise BadInvocation(f"unknown field(s) {unknown}: use invokeId, payload, timeout")
    timeout = body.get("timeout")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float)
        or not (math.isfinite(timeout) and timeout > 0)
    ):  # fmt: skip
        raise BadInvocation("'timeout' must be a positive number of seconds")
    return InvokeRequest(invoke_id, body.get("payload"), timeout)


def invoke_id_of(raw: bytes) -> str | None:
    """The request's invokeId if one can be read at all (to answer a malformed request)."""
    try:
        body = json.loads(raw)
        value = body.get("invokeId") if isinstance(body, dict) else None
        return check_invoke_id(value) if isinstance(value, str) and value else None
    except (ValueError, FunctionError):
        return None


def result_message(invoke_id: str, reply: Reply) -> dict[str, Any]:
    """The ``result`` message of a successful call."""
    if reply.is_json:
        try:
            return {"invokeId": invoke_id, "result": json.loads(reply.body)}
        except ValueError:
            pass  # labelled JSON but is not: pass it on as bytes
    encoded = base64.b64encode(reply.body).decode("ascii")
    return {"invokeId": invoke_id, "result": encoded, "encoding": "base64"}


def error_message(invoke_id: str, error: FunctionError) -> dict[str, Any]:
    return {"invokeId": invoke_id, "error": error.body()}


class FunctionInvoker:
    """Answers this node's invoke messages through ``caller``, publishing the results."""

    def __init__(
        self,
        caller: Invoke,
        *,
        publish: Publish,
        topics: TopicScheme,
        namespace: str,
        node: str,
        workers: int = 8,
        max_pending: int = 256,
    ) -> None:
        self.caller = caller
        self.publish = publish
        self.topics = topics
        self.namespace, self.node = namespace, node
        self.max_pending = max_pending
        self._pending = 0
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tether-invoke")

    def handle(self, topic: str, payload: bytes) -> None:
        """Invoke and publish the result. Never raises."""
        target = self.topics.parse(topic)
        if (
            target is None
            or target.suffix != Suffix.FUNCTION_INVOKE
            or (target.namespace, target.node) != (self.namespace, self.node)
            or target.app is None
            or target.function is None
        ):
            log.debug("ignoring %r: not an invoke topic of this node", topic)
            return
        app, function = target.app, target.function
        invoke_id = invoke_id_of(payload)
        try:
            request = parse_invoke_request(payload)
            invoke_id = request.invoke_id
            body = encode_json(request.payload)
            reply = self.caller.invoke(
                app, function, body, invoke_id=invoke_id, timeout=request.timeout
            )
            message = result_message(invoke_id, reply)
        except FunctionError as exc:
            if invoke_id is None:
                log.warning("dropped an invoke of %s/%s without invokeId: %s", app, function, exc)
                return
            message = error_message(invoke_id, exc)
        except Exception:
            log.exception("invoking %s/%s failed", app, function)
            if invoke_id is None:
                return
            message = error_message(invoke_id, FunctionError("internal error of the invoker"))
        self._publish(app, function, message)

    def submit(self, topic: str, payload: bytes) -> None:
        """``handle`` on a worker thread; 429 at once when ``max_pending`` are waiting."""
        with self._lock:
            busy = self._pending >= self.max_pending
            if not busy:
                self._pending += 1
        if busy:
            target, invoke_id = self.topics.parse(topic), invoke_id_of(payload)
            if target is not None and target.app and target.function and invoke_id:
                error = TooManyInFlight("too many invocations in flight on this node; retry")
                self._publish(target.app, target.function, error_message(invoke_id, error))
            return
        self._pool.submit(self._run, topic, payload)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self, topic: str, payload: bytes) -> None:
        try:
            self.handle(topic, payload)
        finally:
            with self._lock:
                self._pending -= 1

    def _publish(self, app: str, function: str, message: dict[str, Any]) -> None:
        topic = self.topics.function_topic(self.namespace, self.node, app, function, result=True)
        try:
            self.publish(topic, encode_json(message))
        except Exception:
            log.exception("could not publish the result of %s/%s", app, function)
