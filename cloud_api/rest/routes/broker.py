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
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from cloud_api.errors import ConfigError, Unauthorized
from cloud_api.rest.deps import BrokerAuthBody, ContextDep, CurrentToken, SessionDep
from cloud_api.rest.routes.activation import AuthorityDep
from cloud_api.services.mqtt_auth import authenticate_certificate
from cloud_api.services.node_certificates import revocation_list
from cloud_api.services.tokens import authorize
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
