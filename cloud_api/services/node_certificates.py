"""Node client certificates as records: issuing, checking at connect, revoking, renewing.

The CA (``cloud_api.security.pki``) only signs; this module remembers. Every certificate issued to
a node is a ``NodeCertificate`` row (serial, node, expiry). The broker admits a client
certificate only if its serial is such a row, of the node named by its CN, not revoked
and not expired: an allow-list, so a certificate this cloud never recorded (a CA key
leak aside) gets nothing, and revoking is one UPDATE. Rows are kept past node deletion,
so a deleted node's certificates stay refused even if its name is reused.

A broker that checks certificates itself (Mosquitto) cannot ask for each connection, so
the revoked rows that have not expired yet are also published as a CRL signed by the CA
(``GET /v1/broker/crl``); an expired certificate needs no listing, TLS refuses it anyway.

Renewal (``POST /v1/renew``): the node sends a CSR for a *new* key, its current
certificate and ``proof``, a signature of the CSR's PEM bytes made with its *current*
key. A replayed request yields a certificate for a key only the node holds, so the proof
needs no nonce; the old certificate stays valid until it expires, so the node switches
without a gap.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Collection

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from sqlalchemy import update
from sqlmodel import Session, col, select

from cloud_api.errors import Unauthorized
from cloud_api.security.pki import CertificateAuthority, describe
from cloud_api.store.models import NodeCertificate, NodeCredential, RenewalRequest, RenewalResponse
from schemas.names import node_identity, parse_node_identity


def record_certificate(
    session: Session, namespace: str, node: str, cert_pem: str, *, now: int
) -> NodeCertificate:
    """Remember a certificate just issued to ``namespace/node`` (the caller commits)."""
    info = describe(cert_pem)
    row = NodeCertificate(
        serial=info.serial, namespace=namespace, node=node, issued_at=now, not_after=info.not_after
    )
    session.add(row)
    return row


def revoke_node_credentials(
    session: Session, namespace: str, node: str, *, now: int, keep_serial: str | None = None
) -> list[str]:
    """Revoke every certificate of the node (but ``keep_serial``) and drop its password.

    Returns the serials revoked now; the caller commits.
    """
    query = select(NodeCertificate).where(
        col(NodeCertificate.namespace) == namespace,
        col(NodeCertificate.node) == node,
        col(NodeCertificate.revoked_at).is_(None),
    )
    serials = [row.serial for row in session.exec(query).all() if row.serial != keep_serial]
    if serials:
        session.exec(
            update(NodeCertificate)
            .where(col(NodeCertificate.serial).in_(serials))
            .values(revoked_at=now)
            .execution_options(synchronize_session=False)
        )
    credential = session.get(NodeCredential, (namespace, node))
    if credential is not None:
        session.delete(credential)
    return serials


def cut_off(session: Session, namespace: str, node: str, *, now: int) -> bool:
    """Whether the node had a certificate revoked and holds no credential that still works
    (no unrevoked, unexpired certificate, no password): it must not be served, and a
    connection it still has is one the broker should not have kept."""
    rows = session.exec(
        select(NodeCertificate).where(
            col(NodeCertificate.namespace) == namespace, col(NodeCertificate.node) == node
        )
    ).all()
    if not any(row.revoked_at is not None for row in rows):
        return False
    if any(row.revoked_at is None and row.not_after > now for row in rows):
        return False
    return session.get(NodeCredential, (namespace, node)) is None


def cut_off_among(
    session: Session, namespace: str, nodes: Collection[str], *, now: int
) -> set[str]:
    """The nodes of ``nodes`` that are ``cut_off``: one query for the batch, and the full
    check only for the few that ever had a certificate revoked."""
    if not nodes:
        return set()
    suspects = session.exec(
        select(NodeCertificate.node).where(
            col(NodeCertificate.namespace) == namespace,
            col(NodeCertificate.node).in_(sorted(set(nodes))),
            col(NodeCertificate.revoked_at).is_not(None),
        ).distinct()
    ).all()
    return {node for node in suspects if cut_off(session, namespace, node, now=now)}


def revoked_unexpired(session: Session, *, now: int) -> list[NodeCertificate]:
    """The revoked certificates still within their validity, by serial: what a CRL lists."""
    query = (
        select(NodeCertificate)
        .where(col(NodeCertificate.revoked_at).is_not(None), col(NodeCertificate.not_after) > now)
        .order_by(col(NodeCertificate.serial))
    )
    return list(session.exec(query).all())


def revocation_list(session: Session, authority: CertificateAuthority, *, now: int) -> str:
    """The CA's CRL (PEM) of every revoked, unexpired node certificate."""
    entries = [
        (int(row.serial, 16), row.revoked_at)
        for row in revoked_unexpired(session, now=now)
        if row.revoked_at is not None
    ]
    return authority.revocation_list(entries)


def certificate_allowed(session: Session, identity: str | None, serial: str | None, *, now: int) -> bool:
    """Whether a client certificate (its CN ``identity`` and ``serial``) may connect."""
    parsed = parse_node_identity(identity)
    if parsed is None or not serial:
        return False
    row = session.get(NodeCertificate, serial.lower())
    return (
        row is not None
        and (row.namespace, row.node) == parsed
        and row.revoked_at is None
        and row.not_after > now
    )


def renew(
    session: Session,
    request: RenewalRequest,
    *,
    authority: CertificateAuthority,
    days: int,
    now: int,
) -> RenewalResponse:
    """A new certificate for the CSR's key, if the current certificate and proof hold."""
    refused = Unauthorized("the current certificate is unknown, revoked, expired or not proven")
    if not authority.is_issuer_of(request.certificate):
        raise refused
    info = describe(request.certificate)
    if not certificate_allowed(session, info.common_name, info.serial, now=now):
        raise refused
    if not _proof_holds(request.certificate, request.csr, request.proof):
        raise refused
    parsed = parse_node_identity(info.common_name)
    assert parsed is not None  # certificate_allowed checked it
    namespace, node = parsed
    cert_pem = authority.sign_csr(request.csr, common_name=node_identity(namespace, node), days=days)
    record_certificate(session, namespace, node, cert_pem, now=now)
    session.commit()
    return RenewalResponse(ca=authority.certificate_pem, certificate=cert_pem)


def _proof_holds(cert_pem: str, csr_pem: str, proof: str) -> bool:
    try:
        signature = base64.b64decode(proof, validate=True)
        key = x509.load_pem_x509_certificate(cert_pem.encode("ascii")).public_key()
        data = csr_pem.encode("ascii")
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
        else:
            return False
    except (ValueError, TypeError, binascii.Error, InvalidSignature, UnicodeEncodeError):
        return False
    return True
