"""``POST /v1/broker/authenticate``: a standalone broker asks whether a client may connect.

Only an admin token may ask (it is the broker's, not a user's): the answer is an oracle
for passwords, so it is not for everyone. A password client is asked about with
``{"username", "password"}``; a client that presented a certificate (verified by the
broker's TLS layer against the cloud's CA) with ``{"username", "certificateSerial"}``,
answered from the certificate records: known, of that node, not revoked, not expired.
"""

from __future__ import annotations

from fastapi import APIRouter

from cloud_api.deps import BrokerAuthBody, ContextDep, CurrentToken
from cloud_api.errors import Unauthorized
from cloud_api.models import BrokerAuthResponse
from cloud_api.services.mqtt_auth import authenticate_certificate
from cloud_api.services.tokens import authorize

router = APIRouter(prefix="/v1/broker", tags=["broker"])


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
