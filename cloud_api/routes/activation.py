"""Install commands (``GET .../nodes/{node}/init``) and ``POST /v1/activate``.

``activate`` is the one write endpoint without a bearer token: the one-time token in the
body is the credential.
"""

from __future__ import annotations

from fastapi import APIRouter

from cloud_api.deps import ActivationBody, ContextDep, CurrentToken, SessionDep
from cloud_api.models import ActivationResponse, InitResponse, NodeMode
from cloud_api.services.activation import activate, issue_activation_token
from cloud_api.services.tokens import authorize

router = APIRouter(tags=["activation"])


@router.get("/v1/namespaces/{namespace}/nodes/{node}/init", response_model=InitResponse)
def init(
    token: CurrentToken,
    namespace: str,
    node: str,
    session: SessionDep,
    context: ContextDep,
    mode: NodeMode | None = None,
) -> InitResponse:
    """The install command for a node, with a one-time token (default: the node's mode)."""
    authorize(token, namespace=namespace, write=True)
    settings = context.settings
    return issue_activation_token(
        session,
        namespace,
        node,
        mode=mode,
        public_url=settings.public_url,
        ttl_seconds=settings.activation_token_ttl_seconds,
        now=context.now(),
    )


@router.post("/v1/activate", response_model=ActivationResponse)
def activate_node(
    request: ActivationBody, session: SessionDep, context: ContextDep
) -> ActivationResponse:
    mqtt_url = context.settings.node_mqtt_url
    return activate(session, request, mqtt_url=mqtt_url, now=context.now())
