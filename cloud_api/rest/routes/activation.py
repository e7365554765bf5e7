"""Install commands (``GET .../nodes/{node}/init``), ``POST /v1/activate`` and ``POST /v1/renew``.

``activate`` and ``renew`` are the write endpoints without a bearer token: the one-time
token, or the node's current certificate and proof, in the body is the credential.
``activate`` is rate limited per client address (``activation_rate_per_minute``, 429
with ``Retry-After``). The CA and the limiter are the ``Cloud``'s, on ``app.state``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from cloud_api.errors import ConfigError
from cloud_api.rest.deps import ActivationBody, ContextDep, CurrentToken, SessionDep, body_of
from cloud_api.security.limiting import RateLimiter
from cloud_api.security.pki import CertificateAuthority
from cloud_api.services.activation import activate, issue_activation_token
from cloud_api.services.node_certificates import renew
from cloud_api.services.tokens import authorize
from cloud_api.store.models import (
    ActivationResponse,
    InitResponse,
    NodeMode,
    RenewalRequest,
    RenewalResponse,
)

router = APIRouter(tags=["activation"])

RenewalBody = Annotated[RenewalRequest, Depends(body_of(RenewalRequest))]


def get_authority(request: Request) -> CertificateAuthority | None:
    return getattr(request.app.state, "authority", None)


AuthorityDep = Annotated[CertificateAuthority | None, Depends(get_authority)]


def limit_activations(request: Request) -> None:
    limiter: RateLimiter | None = getattr(request.app.state, "activation_limiter", None)
    if limiter is not None:
        client = request.client.host if request.client else "unknown"
        limiter.hit(client, what="activation attempts")


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


@router.post(
    "/v1/activate",
    response_model=ActivationResponse,
    response_model_exclude_none=True,
    dependencies=[Depends(limit_activations)],
)
def activate_node(
    request: ActivationBody, session: SessionDep, context: ContextDep, authority: AuthorityDep
) -> ActivationResponse:
    settings = context.settings
    return activate(
        session,
        request,
        mqtt_url=settings.node_mqtt_url,
        now=context.now(),
        authority=authority,
        tls_url=settings.node_tls_url,
        certificate_days=settings.node_certificate_days,
    )


@router.post("/v1/renew", response_model=RenewalResponse, dependencies=[Depends(limit_activations)])
def renew_certificate(
    request: RenewalBody, session: SessionDep, context: ContextDep, authority: AuthorityDep
) -> RenewalResponse:
    """A new client certificate for a node that proves it holds its current one."""
    if authority is None:
        raise ConfigError("this cloud has no certificate authority")
    return renew(
        session,
        request,
        authority=authority,
        days=context.settings.node_certificate_days,
        now=context.now(),
    )
