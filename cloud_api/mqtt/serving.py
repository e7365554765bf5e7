"""The cloud's side of the shadow protocol (DESIGN §4): what answers each topic a node uses.

``ShadowServer.handle_batch(messages)`` is the whole of it: decode each message, serve the
shadow reads and writes of the batch with one transaction (``store.shadow_writing``), the
``resources/get`` with one session, then publish the replies in arrival order.
``handle(topic, payload)`` is a batch of one. It knows nothing of paho: the bridge's
worker threads call it, and tests call it directly with a ``MemoryPublisher``. It never raises:
whatever a node sends, the answer is a rejection on the request's ``/rejected`` topic (or,
for ``status``, which has none, a log line and a counter), and the worker lives on.

The messages an accepted update causes are ``services.shadows.publish_update``, shared with
the REST API and matching, so an update of ``desired`` sends exactly the messages an
update over MQTT does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from cloud_api.metrics import (
    BRIDGE_ERRORS,
    BRIDGE_MESSAGES,
    UPDATES_ACCEPTED,
    UPDATES_REJECTED,
    Metrics,
)
from cloud_api.mqtt.payloads import decode_payload
from cloud_api.mqtt.transport import Publisher
from cloud_api.services.node_certificates import cut_off_among
from cloud_api.services.rollout import VersionCache, desired_apps_of, fetch_resources
from cloud_api.services.secrets_crypto import SecretBox
from cloud_api.services.shadows import publish_update
from cloud_api.store.engine import Store
from cloud_api.store.shadow_writing import Fetch, Presence, ShadowOp, Update, write_batch
from schemas.errors import ErrorCode, Rejection
from schemas.messages import parse_get_request, parse_status
from schemas.names import node_identity
from schemas.payloads import encode_json
from schemas.shadow import ShadowLimits, client_token_of, parse_update_request
from schemas.topics import REPLIES, NodeTopic, Suffix, TopicScheme

log = logging.getLogger(__name__)

NODE_WRITABLE = ("reported",)


@dataclass
class _Step:
    """One message of a batch: what it asked, and what the batch made of it."""

    request: NodeTopic
    body: Any = None
    op: ShadowOp | None = None  # None: no shadow work (resources/get) or refused before it
    error: Rejection | None = None  # refused before the batch (bad payload, revoked)
    reply_token: str | None = None  # the clientToken a get/accepted echoes
    reply: dict[str, Any] | None = None  # resources/get/accepted, once fetched


class ShadowServer:
    """Answers the requests nodes publish; one instance serves every bridge worker."""

    def __init__(
        self,
        store: Store,
        publisher: Publisher,
        *,
        topics: TopicScheme,
        limits: ShadowLimits,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
        secrets: SecretBox | None = None,
        cut_off: Callable[[str], object] | None = None,
    ) -> None:
        self.store = store
        self.cut_off = cut_off  # told NS/NODE when a node with no working credential speaks
        self.secrets = secrets  # opens sealed resources for resources/get
        self.versions = VersionCache()  # app and config versions: they never change
        self.publisher = publisher
        self.topics = topics
        self.limits = limits
        self.metrics = metrics
        self.clock = clock
        self._handlers: dict[Suffix, Callable[[_Step], None]] = {
            Suffix.SHADOW_GET: self._fetch,
            Suffix.SHADOW_UPDATE: self._update,
            Suffix.RESOURCES_GET: self._read_only,
            Suffix.STATUS: self._presence,
        }

    def now(self) -> int:
        return int(self.clock())

    # -- entry points ------------------------------------------------------------------
    def handle(self, topic: str, payload: bytes) -> None:
        """Answer one message. Never raises."""
        self.handle_batch([(topic, payload)])

    def handle_batch(self, messages: Sequence[tuple[str, bytes]]) -> None:
        """Answer the messages one bridge worker drained, in the order they came. Never raises.

        Every shadow read and write among them (``shadow/get``, ``shadow/update``,
        ``status``) is served by one transaction (``store.shadow_writing``); the replies are
        published after its commit, in arrival order, so a node sees its answers in the
        order it asked. ``resources/get`` only reads, and is answered after that.
        """
        started = time.perf_counter()
        steps = [step for topic, payload in messages if (step := self._step(topic, payload))]
        self._refuse_revoked(steps)
        ops = [step.op for step in steps if step.op is not None and step.error is None]
        try:
            # the bridge's workers are the only callers: each keeps its own connection
            write_batch(self.store, ops, now=self.now(), limits=self.limits, kept=True)
        except Exception:  # write_batch turns database errors into op errors; this is a bug
            log.exception("failed to serve a batch of %d shadow operations", len(ops))
            for op in ops:
                op.error = Rejection(ErrorCode.INTERNAL, "internal error; retry later")
        self._deliver([step for step in steps
                       if step.request.suffix == Suffix.RESOURCES_GET and step.error is None])
        for step in steps:
            self._answer(step)
        updates = sum(1 for step in steps if step.request.suffix == Suffix.SHADOW_UPDATE)
        if updates:  # each update of the batch waited for all of it: that is its latency
            self.metrics.observe_updates("mqtt", time.perf_counter() - started, updates)

    def refuse(self, topic: str, payload: bytes, rejection: Rejection) -> None:
        """Answer a message with ``rejection`` without handling it (e.g. 429 when overloaded)."""
        request = self.topics.parse(topic)
        if request is None or request.suffix not in self._handlers:
            return
        try:
            body = decode_payload(payload, limits=self.limits)
        except Rejection:
            body = None
        self._refuse(request, rejection, client_token_of(body))

    # -- one message -------------------------------------------------------------------
    def _step(self, topic: str, payload: bytes) -> _Step | None:
        """Parse a message into what the batch must do for it; None: nothing to answer."""
        self.metrics.inc(BRIDGE_MESSAGES, direction="in")
        request = self.topics.parse(topic)
        if request is None or request.suffix not in self._handlers:
            self.metrics.inc(BRIDGE_ERRORS, kind="ignored")
            log.debug("ignoring a message on %r: not a topic the cloud serves", topic)
            return None
        if request.suffix == Suffix.STATUS and not payload:
            return None  # an empty retained message: the cloud clearing a deleted node's status
        step = _Step(request)
        try:
            step.body = decode_payload(payload, limits=self.limits)
            self._handlers[request.suffix](step)
        except Rejection as exc:
            step.error = exc
        return step

    def _fetch(self, step: _Step) -> None:
        step.reply_token = parse_get_request(step.body, limits=self.limits)
        step.op = Fetch(step.request.namespace, step.request.node)

    def _update(self, step: _Step) -> None:
        parsed = parse_update_request(step.body, limits=self.limits, writable=NODE_WRITABLE)
        step.op = Update(step.request.namespace, step.request.node, request=parsed)

    def _presence(self, step: _Step) -> None:
        online = parse_status(step.body)["online"]
        step.op = Presence(step.request.namespace, step.request.node, online=online)

    def _read_only(self, step: _Step) -> None:
        """``resources/get``: answered after the batch's transaction (``_answer``)."""

    def _refuse_revoked(self, steps: list[_Step]) -> None:
        """A revoked node saying it is online is not recorded, and is cut off again."""
        online: dict[str, list[_Step]] = {}
        for step in steps:
            if isinstance(step.op, Presence) and step.op.online and step.error is None:
                online.setdefault(step.request.namespace, []).append(step)
        if not online:
            return
        try:
            with self.store.session() as session:
                cut = {(namespace, node)
                       for namespace, batch in online.items()
                       for node in cut_off_among(session, namespace,
                                                 [step.request.node for step in batch],
                                                 now=self.now())}
        except Rejection as exc:
            for batch in online.values():
                for step in batch:
                    step.error = exc
            return
        for batch in online.values():
            for step in batch:
                if (step.request.namespace, step.request.node) in cut:
                    step.op = None
                    self._revoked_node_spoke(step.request)

    def _answer(self, step: _Step) -> None:
        """Publish what ``step`` came to; count it."""
        request, op = step.request, step.op
        error = step.error or (op.error if op is not None else None)
        is_update = request.suffix == Suffix.SHADOW_UPDATE
        if error is not None:
            if is_update:
                self.metrics.inc(UPDATES_REJECTED, source="mqtt", code=str(int(error.code)))
            self._refuse(request, error, client_token_of(step.body))
            return
        try:
            if isinstance(op, Update) and op.outcome is not None:
                self.metrics.inc(UPDATES_ACCEPTED, source="mqtt")
                publish_update(self.publisher, op.outcome, topics=self.topics,
                               namespace=request.namespace, node=request.node)
            elif isinstance(op, Fetch) and op.document is not None:
                reply = op.document.to_json()
                if step.reply_token is not None:
                    reply["clientToken"] = step.reply_token
                self._publish(request, Suffix.SHADOW_GET_ACCEPTED, reply)
            elif isinstance(op, Presence) and not op.known:
                log.info("status from unknown node %s/%s ignored", request.namespace, request.node)
            elif request.suffix == Suffix.RESOURCES_GET and step.reply is not None:
                self._publish(request, Suffix.RESOURCES_GET_ACCEPTED, step.reply)
        except Rejection as exc:
            self._refuse(request, exc, client_token_of(step.body))
        except Exception:
            log.exception("failed to answer a message on %s/%s %s",
                          request.namespace, request.node, request.suffix.value)
            internal = Rejection(ErrorCode.INTERNAL, "internal error; retry later")
            self._refuse(request, internal, client_token_of(step.body))

    # -- handlers ----------------------------------------------------------------------
    def _deliver(self, steps: list[_Step]) -> None:
        """Answer the batch's ``resources/get`` with one session: one query for whether their
        nodes were cut off, one for their desired apps, versions from ``self.versions``."""
        if not steps:
            return
        by_namespace: dict[str, list[_Step]] = {}
        for step in steps:
            by_namespace.setdefault(step.request.namespace, []).append(step)
        try:
            with self.store.session() as session:
                for namespace, group in by_namespace.items():
                    nodes = [step.request.node for step in group]
                    cut = cut_off_among(session, namespace, nodes, now=self.now())
                    desired = desired_apps_of(session, namespace, nodes)
                    for step in group:
                        self._fetch_for(session, step, cut=cut, desired=desired)
        except Rejection as exc:  # the database failed: whoever has no answer yet gets this
            for step in steps:
                if step.reply is None and step.error is None:
                    step.error = exc

    def _fetch_for(self, session: Session, step: _Step, *, cut: set[str], desired: dict[str, Any]) -> None:
        request = step.request
        if request.node in cut:
            self._revoked_node_spoke(request)
            step.error = Rejection(ErrorCode.FORBIDDEN, "this node's credentials were revoked")
            return
        try:
            step.reply = fetch_resources(session, self.secrets, request.namespace, request.node,
                                         step.body, limits=self.limits, versions=self.versions,
                                         desired=desired)
        except Rejection as exc:
            step.error = exc
        except Exception:  # a bug must cost this request only, not the batch's answers
            log.exception("failed to answer resources/get of %s/%s", request.namespace, request.node)
            step.error = Rejection(ErrorCode.INTERNAL, "internal error; retry later")

    def _revoked_node_spoke(self, request: NodeTopic) -> None:
        """A revoked node is connected (a broker that cannot ask us let it back in before
        its CRL listed it): have it cut off again."""
        log.warning("revoked node %s/%s is connected: cutting it off",
                    request.namespace, request.node)
        if self.cut_off is not None:
            self.cut_off(node_identity(request.namespace, request.node))

    # -- replies -----------------------------------------------------------------------
    def _publish(self, request: NodeTopic, suffix: Suffix, body: dict[str, Any]) -> None:
        """A reply to a node's request: QoS 0, the node asks again if it is lost."""
        topic = self.topics.topic(request.namespace, request.node, suffix)
        self.publisher.publish(topic, encode_json(body), qos=0)

    def _refuse(self, request: NodeTopic, rejection: Rejection, client_token: str | None) -> None:
        self.metrics.inc(BRIDGE_ERRORS, kind=str(int(rejection.code)))
        replies = REPLIES.get(request.suffix)
        if replies is None:
            log.info(
                "refused %s from %s/%s: %s",
                request.suffix.value,
                request.namespace,
                request.node,
                rejection.message,
            )
            return
        payload = rejection.payload(timestamp=self.now(), client_token=client_token)
        try:
            self._publish(request, replies[1], payload)
        except Exception:
            log.exception("could not publish a rejection to %s/%s", request.namespace, request.node)
