"""Who may connect to the broker: the cloud bridge, and activated nodes as ``NS/NODE``.

The embedded broker calls this in-process (``Cloud.authenticate_mqtt``); a standalone
broker asks ``POST /v1/broker/authenticate``. A client certificate is checked by serial
(``authenticate_certificate``): the TLS layer proved it is ours, this says it is current.
Topic access is a separate, pure rule
(``schemas.topics.TopicScheme.node_may_publish``), applied by the broker.
"""

from __future__ import annotations

from sqlmodel import Session

from cloud_api.security.credentials import hash_secret, same_secret, secret_matches
from cloud_api.services.node_certificates import certificate_allowed
from cloud_api.store.models import NodeCredential
from schemas.names import parse_node_identity

# Compared against when there is no credential, so that an unknown node costs the same
# time as a wrong password and timing does not reveal which nodes exist.
_NO_CREDENTIAL = hash_secret("no credential")


def authenticate_mqtt(
    session: Session,
    username: str | None,
    password: str | None,
    *,
    bridge_username: str,
    bridge_password: str,
) -> bool:
    """Whether ``username``/``password`` may connect; malformed input is simply False."""
    if not username or password is None:
        return False
    if username == bridge_username:
        return same_secret(password, bridge_password)
    identity = parse_node_identity(username)
    if identity is None:
        return False
    credential = session.get(NodeCredential, identity)
    matched = secret_matches(password, credential.password_hash if credential else _NO_CREDENTIAL)
    return matched and credential is not None


def authenticate_certificate(
    session: Session, identity: str | None, serial: str | None, *, now: int
) -> bool:
    """Whether a client certificate (verified by the broker's TLS against our CA) may
    connect: its serial must be a current, unrevoked certificate of the node in its CN."""
    return certificate_allowed(session, identity, serial, now=now)
