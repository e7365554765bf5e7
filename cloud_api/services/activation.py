"""Issuing install commands and exchanging their one-time tokens for node credentials.

An activation token is random, stored hashed, expires (``activation_token_ttl_seconds``)
and is spent by a conditional update (``... WHERE used_at IS NULL AND expires_at > now``),
so of two concurrent activations with one token exactly one succeeds, on any number of
replicas.

With a CSR (DESIGN §7) the node made its key itself and keeps it; the cloud signs a short
lived client certificate whose CN is ``NS/NODE`` and answers with it, the CA and the
``mqtts://`` broker URL, and no password. Without a CSR activation sets a fresh password.
Either way activation replaces the node's earlier credentials: its previous password is
dropped and its previous certificates are revoked.
"""

from __future__ import annotations

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from cloud_api.errors import Busy, Unauthorized
from cloud_api.security.credentials import broker_hash, hash_secret, new_secret
from cloud_api.security.pki import CertificateAuthority
from cloud_api.services.install import install_command
from cloud_api.services.node_certificates import record_certificate, revoke_node_credentials
from cloud_api.services.nodes import get_node
from cloud_api.store.models import (
    ActivationRequest,
    ActivationResponse,
    ActivationToken,
    InitResponse,
    MqttCredentials,
    NodeCredential,
    NodeMode,
)
from schemas.errors import ErrorCode, Rejection
from schemas.names import node_identity

SPENT_TOKEN_RETENTION_SECONDS = 24 * 3600


def pending_token(session: Session, token: str, *, now: int) -> ActivationToken:
    """The unspent, unexpired activation token ``token`` (for the install script and
    manifest, which embed it without spending it); 401 otherwise."""
    row = session.get(ActivationToken, hash_secret(token)) if len(token) <= 256 else None
    if row is None or row.used_at is not None or row.expires_at <= now:
        raise Unauthorized(
            "activation token is unknown, used or expired: get a new install command "
            "with GET /v1/namespaces/NS/nodes/NODE/init"
        )
    return row


def issue_activation_token(
    session: Session,
    namespace: str,
    node: str,
    *,
    mode: NodeMode | None,
    public_url: str,
    ttl_seconds: int,
    now: int,
) -> InitResponse:
    """A one-time token for ``namespace/node`` and the install command carrying it."""
    target = get_node(session, namespace, node)
    chosen = mode if mode is not None else NodeMode(target.mode)
    token = new_secret()
    # Tokens long expired are of no use to anyone: drop them as new ones are made.
    session.exec(
        delete(ActivationToken).where(
            col(ActivationToken.expires_at) < now - SPENT_TOKEN_RETENTION_SECONDS
        )
    )
    session.add(
        ActivationToken(
            token_hash=hash_secret(token),
            namespace=namespace,
            node=node,
            mode=chosen,
            created_at=now,
            expires_at=now + ttl_seconds,
        )
    )
    session.commit()
    return InitResponse(
        command=install_command(public_url, token, chosen),
        token=token,
        expires_at=now + ttl_seconds,
    )


def activate(
    session: Session,
    request: ActivationRequest,
    *,
    mqtt_url: str,
    now: int,
    authority: CertificateAuthority | None = None,
    tls_url: str | None = None,
    certificate_days: int = 30,
) -> ActivationResponse:
    """Spend an activation token; 401 if it is unknown, used or expired.

    A request with ``csr`` needs ``authority`` and ``tls_url`` (400 otherwise); a CSR
    whose CN is not the node's identity, or with a weak key, is 400 and leaves the token
    unspent, so the node can correct its CSR and try again.
    """
    if request.csr is not None and (authority is None or tls_url is None):
        raise Rejection(
            ErrorCode.BAD_REQUEST,
            "this cloud has no TLS broker URL (advertised_mqtts_url): activate without 'csr'",
        )
    digest = hash_secret(request.token)
    spent = session.exec(
        update(ActivationToken)
        .where(
            col(ActivationToken.token_hash) == digest,
            col(ActivationToken.used_at).is_(None),
            col(ActivationToken.expires_at) > now,
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if spent.rowcount != 1:
        session.rollback()
        raise Unauthorized(
            "activation token is unknown, used or expired: get a new install command "
            "with GET /v1/namespaces/NS/nodes/NODE/init"
        )
    row = session.get(ActivationToken, digest, populate_existing=True)
    assert row is not None  # the update above just matched it
    identity = node_identity(row.namespace, row.node)
    if request.csr is not None:
        assert authority is not None and tls_url is not None
        try:
            cert_pem = authority.sign_csr(request.csr, common_name=identity, days=certificate_days)
        except Rejection:
            session.rollback()  # the token stays unspent
            raise
        revoke_node_credentials(session, row.namespace, row.node, now=now)
        record_certificate(session, row.namespace, row.node, cert_pem, now=now)
        _commit(session)
        return ActivationResponse(
            namespace=row.namespace,
            node=row.node,
            mqtt=MqttCredentials(url=tls_url, username=identity),
            ca=authority.certificate_pem,
            certificate=cert_pem,
        )
    password = new_secret()
    revoke_node_credentials(session, row.namespace, row.node, now=now)
    session.flush()
    session.add(
        NodeCredential(
            namespace=row.namespace,
            node=row.node,
            password_hash=hash_secret(password),
            broker_password_hash=broker_hash(password),
            created_at=now,
        )
    )
    _commit(session)
    return ActivationResponse(
        namespace=row.namespace,
        node=row.node,
        mqtt=MqttCredentials(url=mqtt_url, username=identity, password=password),
    )


def _commit(session: Session) -> None:
    try:
        session.commit()
    except IntegrityError as exc:  # the same node activated concurrently with another token
        session.rollback()
        raise Busy("the node is being activated concurrently; retry", retry_after=1.0) from exc
