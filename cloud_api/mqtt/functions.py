"""Relaying function invocations from REST to a node over MQTT and back (DESIGN §4).

``POST .../nodes/{node}/functions/{app}/{function}:invoke`` becomes a message on the
node's ``functions/{app}/{function}/invoke`` topic, ``{"invokeId", "payload", "timeout"}``;
the node answers on ``.../result`` with ``{"invokeId", "result"[, "encoding"]}`` or
``{"invokeId", "error": {"code", "message"}}``. ``FunctionRelay`` keeps one
``concurrent.futures.Future`` per invocation in flight, keyed by invokeId: the bridge's
worker resolves it (``resolve``) and the REST route awaits it, so a waiting request holds
no thread. A bounded number may be in flight (more: 429); a result is accepted only from
the topic of the invocation it answers, so one node cannot answer for another.

A node the cloud knows is offline (its last ``status`` said so, or it never connected) is
not invoked at all: ``refuse_if_offline`` answers 503 at once with when it was last seen,
rather than publishing a message no one will answer and waiting out the timeout. A node
shown online that does not answer still ends in 504 after the timeout.

Results are not load-balanced: ``result_filter`` is subscribed without a share group, so
with several cloud replicas each sees every result and keeps those it is waiting for.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from typing import Any

from cloud_api.errors import AlreadyExists, Busy, NodeOffline
from cloud_api.mqtt.transport import Publisher
from schemas.errors import ErrorCode, Rejection
from schemas.payloads import decode_json, encode_json
from schemas.topics import Suffix, TopicScheme

log = logging.getLogger(__name__)
Handler = Callable[[Sequence[tuple[str, bytes]]], None]  # a bridge batch
DEFAULT_TIMEOUT = 30.0
MAX_TIMEOUT = 300.0
MAX_IN_FLIGHT = 1000
MAX_INVOKE_ID = 64
MAX_RESULT_BYTES = 16 * 1024 * 1024
OFFLINE_RETRY_AFTER = 5.0  # seconds: a node that reconnects is shown online within this


def result_filter(topics: TopicScheme) -> str:
    """The bridge's subscription to every node's function results (never shared)."""
    return f"{topics.root}/+/+/functions/+/+/result"


@dataclass(frozen=True)
class FunctionOutcome:
    """A node's answer: ``result`` (base64 text when ``encoding``) or ``error``."""

    invoke_id: str
    result: Any = None
    encoding: str | None = None
    error: dict[str, Any] | None = None


def check_invoke_id(value: str | None) -> str:
    if not value:
        return uuid.uuid4().hex
    if len(value) > MAX_INVOKE_ID or not value.isascii() or not value.isprintable():
        message = f"invoke id must be 1-{MAX_INVOKE_ID} printable ASCII characters"
        raise Rejection(ErrorCode.BAD_REQUEST, message)
    return value


def refuse_if_offline(
    namespace: str, node: str, *, online: bool, last_seen: int | None, now: float
) -> None:
    """Raise ``NodeOffline`` (503, ``Retry-After``) unless the node's last status said online.

    ``last_seen`` is when the cloud recorded the node's last status, so for an offline node
    it is when it went offline."""
    if online:
        return
    if last_seen is None:
        message = f"node {namespace}/{node} is offline: it has never connected"
    else:
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(last_seen))
        ago = max(0, int(now) - last_seen)
        message = f"node {namespace}/{node} is offline since {since} ({ago} s ago)"
    raise NodeOffline(f"{message}; nothing was sent to it", retry_after=OFFLINE_RETRY_AFTER)


def parse_result(body: Any) -> FunctionOutcome | None:
    """A ``result`` message, or None when it is not the contract's shape."""
    if not isinstance(body, dict) or not isinstance(body.get("invokeId"), str):
        return None
    error = body.get("error")
    if error is not None:
        code = error.get("code") if isinstance(error, dict) else None
        if not isinstance(code, int) or isinstance(code, bool) or not 400 <= code <= 599:
            error = {"code": 502, "message": "the node sent a malformed error"}
        else:
            error = {**error, "message": str(error.get("message", ""))}
        return FunctionOutcome(body["invokeId"], error=error)
    encoding = body.get("encoding")
    if "result" not in body or encoding not in (None, "base64"):
        return None
    return FunctionOutcome(body["invokeId"], result=body["result"], encoding=encoding)


class FunctionRelay:
    """Invocations in flight, keyed by invokeId. Thread-safe."""

    def __init__(
        self,
        *,
        max_in_flight: int = MAX_IN_FLIGHT,
        timeout: float = DEFAULT_TIMEOUT,
        max_timeout: float = MAX_TIMEOUT,
    ) -> None:
        self.max_in_flight = max_in_flight
        self.timeout, self.max_timeout = timeout, max_timeout
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[str, Future[FunctionOutcome]]] = {}

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._pending)

    def bounded_timeout(self, requested: float | None) -> float:
        if requested is None:
            return self.timeout
        if not (math.isfinite(requested) and requested > 0):
            raise Rejection(ErrorCode.BAD_REQUEST, "timeout must be a positive number of seconds")
        return min(requested, self.max_timeout)

    def submit(
        self,
        publisher: Publisher,
        *,
        topics: TopicScheme,
        namespace: str,
        node: str,
        app: str,
        function: str,
        payload: Any,
        timeout: float,
        invoke_id: str | None = None,
    ) -> tuple[str, Future[FunctionOutcome]]:
        """Publish the invoke message; the future resolves with the node's answer.

        The caller waits at most ``timeout`` and must ``forget`` the id if it gives up.
        """
        invoke_id = check_invoke_id(invoke_id)
        invoke_topic = topics.function_topic(namespace, node, app, function, result=False)
        result_topic = topics.function_topic(namespace, node, app, function, result=True)
        future: Future[FunctionOutcome] = Future()
        with self._lock:
            if invoke_id in self._pending:
                raise AlreadyExists(f"invocation {invoke_id!r} is already in flight")
            if len(self._pending) >= self.max_in_flight:
                raise Busy("too many function invocations in flight; retry shortly")
            self._pending[invoke_id] = (result_topic, future)
        message = {"invokeId": invoke_id, "payload": payload, "timeout": timeout}
        try:
            publisher.publish(invoke_topic, encode_json(message))
        except BaseException:
            self.forget(invoke_id)
            raise
        return invoke_id, future

    def forget(self, invoke_id: str) -> None:
        with self._lock:
            self._pending.pop(invoke_id, None)

    def resolve(self, topic: str, payload: bytes) -> None:
        """Hand a ``result`` message to the invocation waiting for it. Never raises."""
        try:
            outcome = parse_result(decode_json(payload, max_bytes=MAX_RESULT_BYTES))
        except Rejection:
            outcome = None
        if outcome is None:
            log.info("ignoring a malformed function result on %s", topic)
            return
        with self._lock:
            waiting = self._pending.get(outcome.invoke_id)
            if waiting is None or waiting[0] != topic:
                return  # late, for another replica, or from a node it was not sent to
            del self._pending[outcome.invoke_id]
        try:
            waiting[1].set_result(outcome)
        except InvalidStateError:
            pass  # the waiter gave up (timed out) at this very moment


def route_results(relay: FunctionRelay, topics: TopicScheme, handle: Handler) -> Handler:
    """The bridge's handler: function results to ``relay``, everything else to ``handle``."""

    def dispatch(batch: Sequence[tuple[str, bytes]]) -> None:
        rest = []
        for topic, payload in batch:
            parsed = topics.parse(topic)
            if parsed is not None and parsed.suffix == Suffix.FUNCTION_RESULT:
                relay.resolve(topic, payload)
            else:
                rest.append((topic, payload))
        if rest:
            handle(rest)

    return dispatch
