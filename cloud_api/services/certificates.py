"""Certificate resources: checking uploaded PEM pairs, generating new ones, describing them.

Why it exists: a certificate resource is a PEM certificate and its private key that apps
mount (TLS servers on the edge). The cloud refuses a pair that does not parse or does not
belong together (400), can generate a self-signed one or one signed by the cloud's CA
(``cloud_api.security.pki``), and shows subject, SANs and validity without ever returning the key.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cloud_api.errors import CloudError
from cloud_api.security.pki import CertificateAuthority, describe, san_entries
from cloud_api.store.models.resources import CertificateCreate, CertificateGenerate
from schemas.errors import ErrorCode
from schemas.resources import Certificate


def _refuse(message: str) -> CloudError:
    return CloudError(message, code=ErrorCode.BAD_REQUEST)


def self_signed(request: CertificateGenerate) -> tuple[str, str]:
    """A new ECDSA P-256 key and a self-signed server certificate: ``(cert_pem, key_pem)``."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, request.common_name)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=request.days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    if request.sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(san_entries(request.sans)), critical=False)
    cert = builder.sign(key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()


def _check_pair(cert_pem: str, key_pem: str) -> None:
    describe(cert_pem)  # 400 if not a PEM certificate
    certificate = x509.load_pem_x509_certificate(cert_pem.encode("ascii"))
    try:
        key = serialization.load_pem_private_key(key_pem.encode("ascii"), password=None)
    except (ValueError, TypeError, UnicodeEncodeError) as exc:
        raise _refuse("privateKey is not an unencrypted PEM private key") from exc
    public = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*public) != certificate.public_key().public_bytes(*public):
        raise _refuse("privateKey does not belong to the certificate")


def certificate_wire(body: CertificateCreate, *, ca_dir: Path) -> dict[str, Any]:
    """The wire form (``schemas.resources.Certificate``) of a create/update request."""
    if body.generate is not None:
        generate = body.generate
        if generate.self_signed:
            cert_pem, key_pem = self_signed(generate)
        else:
            authority = CertificateAuthority.load_or_create(ca_dir)
            cert_pem, key_pem = authority.issue(
                generate.common_name, sans=generate.sans, days=generate.days, server=True
            )
    else:
        assert body.certificate is not None and body.private_key is not None
        cert_pem, key_pem = body.certificate, body.private_key
        _check_pair(cert_pem, key_pem)
    return Certificate(name=body.name, certificate=cert_pem, private_key=key_pem).wire()


def certificate_view(wire: dict[str, Any]) -> dict[str, Any]:
    """What REST shows of a certificate: everything but the private key."""
    info = describe(wire["certificate"])
    return {
        "name": wire["name"],
        "certificate": wire["certificate"],
        "subject": info.subject,
        "commonName": info.common_name,
        "issuer": info.issuer,
        "sans": list(info.sans),
        "serial": info.serial,
        "notBefore": info.not_before,
        "notAfter": info.not_after,
    }
