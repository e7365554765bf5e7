"""The cloud's side of the shadow protocol (DESIGN §4): what answers each topic a node uses.

``ShadowServer.handle(topic, payload)`` is the whole of it: decode, dispatch on the topic,
run the service, publish the replies. It knows nothing of paho: the bridge's worker
threads call it, and tests call it directly with a ``MemoryPublisher``. It never raises:
whatever a node sends, the answer is a rejection on the request's ``/rejected`` topic (or,
for ``status``, which has none, a log line and a counter), and the worker lives on.

``publish_update`` is shared with the REST API, so an update of ``desired`` over REST sends
exactly the messages an update over MQTT does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from cloud_api.metrics import BRIDGE_ERRORS, BRIDGE_MESSAGES, Metrics
from cloud_api.payloads import decode_payload
from cloud_api.services.node_certificates import cut_off
from cloud_api.services.nodes import set_online
from cloud_api.services.rollout import fetch_resources
from cloud_api.services.secrets_crypto import SecretBox
from cloud_api.services.shadows import get_document, update_shadow
from cloud_api.store.engine import Store
from cloud_api.transport import Publisher
from schemas.errors import ErrorCode, Rejection
from schemas.messages import parse_get_request, parse_status
from schemas.names import node_identity
from schemas.payloads import encode_json
from schemas.shadow import ShadowLimits, UpdateOutcome, client_token_of
from schemas.topics import REPLIES, NodeTopic, Suffix, TopicScheme

log = logging.getLogger(__name__)

NODE_WRITABLE = ("reported",)


def publish_update(
    publisher: Publisher, outcome: UpdateOutcome, *, topics: TopicScheme, namespace: str, node: str
) -> None:
    """The messages of an accepted update: ``accepted``, ``delta`` if any, ``documents``."""
    messages = [
        (Suffix.SHADOW_UPDATE_ACCEPTED, outcome.accepted_payload()),
        (Suffix.SHADOW_UPDATE_DELTA, outcome.delta_payload()),
        (Suffix.SHADOW_UPDATE_DOCUMENTS, outcome.documents_payload()),
    ]
    for suffix, body in messages:
        if body is not None:
            publisher.publish(topics.topic(namespace, node, suffix), encode_json(body))


def clear_status(publisher: Publisher, *, topics: TopicScheme, namespace: str, node: str) -> None:
    """Remove a deleted node's retained ``status`` (an empty retained message clears it)."""
    publisher.publish(topics.topic(namespace, node, Suffix.STATUS), b"", retain=True)


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
        self.publisher = publisher
        self.topics = topics
        self.limits = limits
        self.metrics = metrics
        self.clock = clock
        self._handlers: dict[Suffix, Callable[[NodeTopic, Any], None]] = {
            Suffix.SHADOW_GET: self._shadow_get,
            Suffix.SHADOW_UPDATE: self._shadow_update,
            Suffix.RESOURCES_GET: self._resources_get,
            Suffix.STATUS: self._status,
        }

    def now(self) -> int:
        return int(self.clock())

    # -- entry points ------------------------------------------------------------------
    def handle(self, topic: str, payload: bytes) -> None:
        """Answer one message. Never raises."""
        self.metrics.inc(BRIDGE_MESSAGES, direction="in")
        request = self.topics.parse(topic)
        if request is None or request.suffix not in self._handlers:
            self.metrics.inc(BRIDGE_ERRORS, kind="ignored")
            log.debug("ignoring a message on %r: not a topic the cloud serves", topic)
            return
        if request.suffix == Suffix.STATUS and not payload:
            return  # an empty retained message: the cloud clearing a deleted node's status
        body: Any = None
        is_update = request.suffix == Suffix.SHADOW_UPDATE
        counting: AbstractContextManager[None] = (
            self.metrics.counting_update("mqtt") if is_update else nullcontext()
        )
        try:
            with counting:
                body = decode_payload(payload, limits=self.limits)
                self._handlers[request.suffix](request, body)
        except Rejection as exc:
            self._refuse(request, exc, client_token_of(body))
        except Exception:
            log.exception("failed to answer a message on %r", topic)
            internal = Rejection(ErrorCode.INTERNAL, "internal error; retry later")
            self._refuse(request, internal, client_token_of(body))

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

    # -- handlers ----------------------------------------------------------------------
    def _shadow_get(self, request: NodeTopic, body: Any) -> None:
        client_token = parse_get_request(body, limits=self.limits)
        with self.store.session() as session:
            document = get_document(session, request.namespace, request.node)
        reply = document.to_json()
        if client_token is not None:
            reply["clientToken"] = client_token
        self._publish(request, Suffix.SHADOW_GET_ACCEPTED, reply)

    def _shadow_update(self, request: NodeTopic, body: Any) -> None:
        with self.store.session() as session:
            outcome = update_shadow(
                session,
                request.namespace,
                request.node,
                body,
                writable=NODE_WRITABLE,
                now=self.now(),
                limits=self.limits,
            )
        namespace, node = request.namespace, request.node
        publish_update(self.publisher, outcome, topics=self.topics, namespace=namespace, node=node)

    def _resources_get(self, request: NodeTopic, body: Any) -> None:
        with self.store.session() as session:
            if cut_off(session, request.namespace, request.node, now=self.now()):
                self._revoked_node_spoke(request)
                raise Rejection(ErrorCode.FORBIDDEN, "this node's credentials were revoked")
            reply = fetch_resources(
                session, self.secrets, request.namespace, request.node, body, limits=self.limits
            )
        self._publish(request, Suffix.RESOURCES_GET_ACCEPTED, reply)

    def _status(self, request: NodeTopic, body: Any) -> None:
        status = parse_status(body)
        with self.store.session() as session:
            if status["online"] and cut_off(
                session, request.namespace, request.node, now=self.now()
            ):
                self._revoked_node_spoke(request)
                return
            known = set_online(
                session, request.namespace, request.node, online=status["online"], now=self.now()
            )
        if not known:
            log.info("status from unknown node %s/%s ignored", request.namespace, request.node)

    def _revoked_node_spoke(self, request: NodeTopic) -> None:
        """A revoked node is connected (a broker that cannot ask us let it back in before
        its CRL listed it): have it cut off again."""
        log.warning("revoked node %s/%s is connected: cutting it off",
                    request.namespace, request.node)
        if self.cut_off is not None:
            self.cut_off(node_identity(request.namespace, request.node))

    # -- replies -----------------------------------------------------------------------
    def _publish(self, request: NodeTopic, suffix: Suffix, body: dict[str, Any]) -> None:
        topic = self.topics.topic(request.namespace, request.node, suffix)
        self.publisher.publish(topic, encode_json(body))

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
