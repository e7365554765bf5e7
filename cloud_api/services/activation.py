"""Issuing install commands and exchanging their one-time tokens for node credentials.

An activation token is random, stored hashed, expires (``activation_token_ttl_seconds``)
and is spent by a conditional update (``... WHERE used_at IS NULL AND expires_at > now``),
so of two concurrent activations with one token exactly one succeeds, on any number of
replicas. Activation sets a fresh node password whose hash replaces any earlier one: the
previous password of a re-activated node stops working at its next connect.
"""

from __future__ import annotations

import shlex

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from cloud_api.credentials import hash_secret, new_secret
from cloud_api.errors import Busy, Unauthorized
from cloud_api.models import (
    ActivationRequest,
    ActivationResponse,
    ActivationToken,
    InitResponse,
    MqttCredentials,
    NodeCredential,
    NodeMode,
)
from cloud_api.services.nodes import get_node
from schemas.errors import ErrorCode, Rejection
from schemas.names import node_identity

SPENT_TOKEN_RETENTION_SECONDS = 24 * 3600


def install_command(public_url: str, token: str, mode: NodeMode) -> str:
    """The shell command an operator runs on the node."""
    return (
        f"tether edge activate --cloud {shlex.quote(public_url)} --token {shlex.quote(token)}"
        f" && tether edge run --backend {mode.value}"
    )


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
    session: Session, request: ActivationRequest, *, mqtt_url: str, now: int
) -> ActivationResponse:
    """Spend an activation token; 401 if it is unknown, used or expired."""
    if request.csr is not None:
        raise Rejection(
            ErrorCode.BAD_REQUEST,
            "certificate activation (csr) is not supported yet: omit 'csr' to get a password",
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
    password = new_secret()
    credential = session.get(NodeCredential, (row.namespace, row.node))
    if credential is None:
        session.add(
            NodeCredential(
                namespace=row.namespace,
                node=row.node,
                password_hash=hash_secret(password),
                created_at=now,
            )
        )
    else:
        credential.password_hash = hash_secret(password)
        credential.created_at = now
        session.add(credential)
    try:
        session.commit()
    except IntegrityError as exc:  # the same node activated concurrently with another token
        session.rollback()
        raise Busy("the node is being activated concurrently; retry", retry_after=1.0) from exc
    return ActivationResponse(
        namespace=row.namespace,
        node=row.node,
        mqtt=MqttCredentials(
            url=mqtt_url, username=node_identity(row.namespace, row.node), password=password
        ),
    )
