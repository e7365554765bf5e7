"""``GET|PATCH .../nodes/{node}/shadow``: read the document; patch ``desired``.

REST writes ``desired`` only (a request naming ``reported`` gets 403: that is the node's).
An accepted PATCH publishes the same ``accepted``/``delta``/``documents`` messages as an
update over MQTT, through the bridge, so the node hears of it at once.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from cloud_api.mqtt.payloads import decode_payload
from cloud_api.rest.deps import ContextDep, CurrentToken, PublisherDep, RawBody, SessionDep
from cloud_api.services.shadows import get_document, publish_update, update_shadow
from cloud_api.services.tokens import authorize

router = APIRouter(prefix="/v1/namespaces/{namespace}/nodes/{node}/shadow", tags=["shadows"])

REST_WRITABLE = ("desired",)


@router.get("")
def get(token: CurrentToken, namespace: str, node: str, session: SessionDep) -> dict[str, Any]:
    authorize(token, namespace=namespace)
    return get_document(session, namespace, node).to_json()


@router.patch("")
def patch(
    token: CurrentToken,
    namespace: str,
    node: str,
    body: RawBody,
    session: SessionDep,
    context: ContextDep,
    publisher: PublisherDep,
) -> dict[str, Any]:
    """Body: ``{"state": {"desired": {...}}, "version"?: N, "clientToken"?: "..."}``."""
    authorize(token, namespace=namespace, write=True)
    limits = context.settings.limits
    with context.metrics.counting_update("rest"):
        payload = decode_payload(body, limits=limits)
        outcome = update_shadow(
            session,
            namespace,
            node,
            payload,
            writable=REST_WRITABLE,
            now=context.now(),
            limits=limits,
            writer=f"rest:token/{token.id}",
        )
    topics = context.settings.topics
    publish_update(publisher, outcome, topics=topics, namespace=namespace, node=node)
    return outcome.document.to_json()
