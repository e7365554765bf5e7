"""``/v1/broker``: what a standalone broker asks the cloud: may a client connect, which
certificates are revoked.

Only an admin token may ask (it is the broker's, not a user's): the answers are an oracle
for passwords and a list of the fleet's certificates, so they are not for everyone.

- ``POST /authenticate``: a password client is asked about with ``{"username",
  "password"}``; a client that presented a certificate (verified by the broker's TLS
  layer against the cloud's CA) with ``{"username", "certificateSerial"}``, answered from
  the certificate records: known, of that node, not revoked, not expired. The embedded
  broker asks this at every connect.
- ``GET /crl``: the CA's certificate revocation list (PEM), for a broker that cannot ask
  per connection: Mosquitto reads it from its ``crlfile``, kept current by
  ``tether broker crl-sync``.
- ``GET /users``: every identity a broker that keeps its own user list must admit, with
  bcrypt hashes only (``tether broker nats-config`` writes NATS's users from it).
- ``/rabbitmq/{user,vhost,resource,topic}`` (GET or POST, form parameters, answers
  ``allow``/``deny``): RabbitMQ's ``rabbitmq_auth_backend_http``;
  ``/emqx/{authenticate,authorize}`` (POST JSON, answers ``{"result"}``): EMQX's HTTP
  authenticator and authorizer. The translation is ``cloud_api.security.broker_webhooks``.
  RabbitMQ sends no headers of its own, so these also take the admin token as the
  password of HTTP basic auth, which it sends from the URL
  (``http://tether:TOKEN@cloud:9080/v1/broker/rabbitmq/user``).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse, Response

from cloud_api.errors import ConfigError, Unauthorized
from cloud_api.rest.context import Context
from cloud_api.rest.deps import BrokerAuthBody, ContextDep, CurrentToken, RawBody, SessionDep
from cloud_api.rest.querying import FOREIGN_QUERY
from cloud_api.rest.routes.activation import AuthorityDep
from cloud_api.security import broker_webhooks
from cloud_api.services.mqtt_auth import BrokerAccess, authenticate_certificate, broker_users
from cloud_api.services.node_certificates import revocation_list
from cloud_api.services.tokens import authenticate_api_token, authorize
from cloud_api.store.models import BrokerAuthResponse

router = APIRouter(prefix="/v1/broker", tags=["broker"])

PEM_CRL = "application/x-pem-file"


class PemResponse(Response):
    media_type = PEM_CRL


@router.post("/authenticate", response_model=BrokerAuthResponse)
def authenticate(
    token: CurrentToken, credentials: BrokerAuthBody, context: ContextDep
) -> BrokerAuthResponse:
    authorize(token, admin=True)
    if credentials.certificate_serial is not None:
        with context.store.session() as session:
            allowed = authenticate_certificate(
                session, credentials.username, credentials.certificate_serial, now=context.now()
            )
        if not allowed:
            raise Unauthorized("unknown, revoked or expired certificate")
    elif not context.authenticate_mqtt(credentials.username, credentials.password):
        raise Unauthorized("bad MQTT username or password")
    return BrokerAuthResponse(allowed=True)


@router.get(
    "/crl",
    response_class=PemResponse,
    responses={200: {
        "description": "The CA's CRL (PEM): every revoked node certificate not yet expired",
        "content": {PEM_CRL: {"schema": {"type": "string"}}},
    }},
)
def certificate_revocation_list(
    token: CurrentToken, session: SessionDep, context: ContextDep, authority: AuthorityDep
) -> PemResponse:
    """The revoked node certificates as a CRL signed by the CA, for Mosquitto's ``crlfile``."""
    authorize(token, admin=True)
    if authority is None:
        raise ConfigError("this cloud has no certificate authority")
    pem = revocation_list(session, authority, now=context.now())
    return PemResponse(pem, headers={"Cache-Control": "no-store"})


@router.get("/users")
def users_for_brokers(token: CurrentToken, session: SessionDep, context: ContextDep) -> dict[str, Any]:
    """The bridge and every node a broker must admit, by bcrypt hash or certificate (no
    password ever); revoked nodes are absent. ``needsActivation``: nodes whose password
    is older than the hashes, to activate again."""
    authorize(token, admin=True)
    return broker_users(session, bridge_username=context.settings.mqtt_username,
                        bridge_password=context.bridge_password,
                        topic_root=context.settings.topic_root, now=context.now())


# -- brokers that ask at every connect and topic (RabbitMQ, EMQX) ------------------------
def broker_admin(request: Request, session: SessionDep) -> None:
    """401/403 unless the caller holds an admin token, as a bearer token or as the
    password of HTTP basic auth (all RabbitMQ's HTTP client can send)."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    token: str | None = None
    if scheme.lower() == "bearer":
        token = value.strip()
    elif scheme.lower() == "basic":
        try:
            token = base64.b64decode(value.strip(), validate=True).decode().partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            token = None
    authorize(authenticate_api_token(session, token or None), admin=True)


BrokerAdmin = Annotated[None, Depends(broker_admin)]


def _access(context: Context) -> Callable[[Callable[[BrokerAccess], Any]], Any]:
    def run(decide: Callable[[BrokerAccess], Any]) -> Any:
        with context.store.session() as session:
            return decide(BrokerAccess(
                session, context.settings.topics,
                bridge_username=context.settings.mqtt_username,
                bridge_password=context.bridge_password, now=context.now(),
            ))
    return run


async def _form(request: Request) -> dict[str, str]:
    """RabbitMQ's parameters: the query string (GET) or the form body (POST)."""
    params = dict(request.query_params)
    if request.method == "POST":
        params.update(parse_qsl((await request.body()).decode("utf-8", "replace")))
    return params


FormParams = Annotated[dict[str, str], Depends(_form)]
RABBITMQ_PATHS: Mapping[str, Callable[[BrokerAccess, Mapping[str, str]], str]] = {
    "user": broker_webhooks.rabbitmq_user,
    "vhost": broker_webhooks.rabbitmq_vhost,
    "topic": broker_webhooks.rabbitmq_topic,
}


@router.post("/rabbitmq/{check}", response_class=PlainTextResponse)
def rabbitmq_check(
    check: str, _: BrokerAdmin, params: FormParams, context: ContextDep
) -> PlainTextResponse:
    """RabbitMQ's ``rabbitmq_auth_backend_http`` (``auth_http.http_method = post``, form
    parameters): ``check`` is ``user``, ``vhost``, ``resource`` or ``topic``; the body is
    ``allow`` or ``deny``."""
    return _rabbitmq_answer(check, params, context)


@router.get("/rabbitmq/{check}", response_class=PlainTextResponse,
            openapi_extra={FOREIGN_QUERY: "rabbitmq_auth_backend_http"})
def rabbitmq_check_by_query(
    check: str, _: BrokerAdmin, params: FormParams, context: ContextDep
) -> PlainTextResponse:
    """The same with ``auth_http.http_method = get`` (RabbitMQ's default): query parameters."""
    return _rabbitmq_answer(check, params, context)


def _rabbitmq_answer(check: str, params: Mapping[str, str], context: Context) -> PlainTextResponse:
    run = _access(context)
    if check == "resource":
        bridge = context.settings.mqtt_username
        answer = run(lambda access: broker_webhooks.rabbitmq_resource(
            access, params, bridge_username=bridge))
    elif check in RABBITMQ_PATHS:
        answer = run(lambda access: RABBITMQ_PATHS[check](access, params))
    else:
        answer = broker_webhooks.DENY
    return PlainTextResponse(answer)


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body or b"{}")
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


@router.post("/emqx/authenticate")
def emqx_authenticate(_: BrokerAdmin, body: RawBody, context: ContextDep) -> dict[str, Any]:
    """EMQX's HTTP authenticator: ``{"result": "allow"|"deny", "is_superuser": false}``."""
    fields = _json_object(body)
    answer: dict[str, Any] = _access(context)(
        lambda access: broker_webhooks.emqx_authenticate(access, fields))
    return answer


@router.post("/emqx/authorize")
def emqx_authorize(_: BrokerAdmin, body: RawBody, context: ContextDep) -> dict[str, Any]:
    """EMQX's HTTP authorizer: ``{"result": "allow"|"deny"}``."""
    fields = _json_object(body)
    answer: dict[str, Any] = _access(context)(
        lambda access: broker_webhooks.emqx_authorize(access, fields))
    return answer
