"""TLS server certificates from the cloud's CA: for the broker's mTLS listener, or the API.

Why it exists apart from ``runtime.Cloud``: issuing one needs the CA and nothing else, so
``tether cloud server-certificate`` (for a Mosquitto that nodes reach over mqtts://) does
it without opening the store. Nodes trust only the cloud's CA (activation hands it to
them), so the server they connect to needs a certificate it issued.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from cloud_api.errors import CloudError
from cloud_api.security.pki import CertificateAuthority, describe
from cloud_api.settings import CloudSettings

_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
LOOPBACK_NAMES = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True)
class ServerFiles:
    """Where ``issue_server_files`` wrote a server's TLS files."""

    certfile: Path
    keyfile: Path
    cafile: Path


def load_authority(settings: CloudSettings) -> CertificateAuthority:
    """The cloud's CA: the files the settings name, else ``DATA_DIR/ca`` (made if missing)."""
    if settings.ca_certfile is not None and settings.ca_keyfile is not None:
        return CertificateAuthority.load(settings.ca_certfile, settings.ca_keyfile)
    return CertificateAuthority.load_or_create(settings.ca_dir)


def issue_server_files(
    authority: CertificateAuthority,
    directory: Path,
    *,
    common_name: str,
    hosts: Sequence[str],
    days: int,
    now: float,
) -> ServerFiles:
    """Write a server certificate for ``hosts`` (plus 127.0.0.1, ::1, localhost), its
    key (0600) and the CA into ``directory`` (made 0700).

    The files already there are kept when they still serve: issued by this CA, for
    every name asked, with more than a third of their lifetime left, and the key
    matching. So a restart does not change what clients see, and a cloud restarted
    with another CA, new host names or an ageing certificate gets a new one.
    """
    sans = [*LOOPBACK_NAMES, *hosts]
    files = ServerFiles(
        certfile=directory / f"{common_name}.crt",
        keyfile=directory / f"{common_name}.key",
        cafile=directory / "ca.crt",
    )
    if not _still_serve(authority, files, sans, now=now):
        cert_pem, key_pem = authority.issue(common_name, sans=sans, days=days, server=True)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(files.keyfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(key_pem)
        files.certfile.write_text(cert_pem, encoding="ascii")
    files.cafile.write_text(authority.certificate_pem, encoding="ascii")
    return files


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _still_serve(
    authority: CertificateAuthority, files: ServerFiles, sans: Sequence[str], *, now: float
) -> bool:
    try:
        cert_pem = files.certfile.read_text(encoding="ascii")
        key = serialization.load_pem_private_key(files.keyfile.read_bytes(), password=None)
        info = describe(cert_pem)
        certificate = x509.load_pem_x509_certificate(cert_pem.encode("ascii"))
    except (OSError, ValueError, TypeError, UnicodeError, CloudError):
        return False
    wanted = {str(ipaddress.ip_address(n)) if _is_ip(n) else n.lower() for n in sans}
    have = {name.lower() for name in info.sans}
    lifetime = info.not_after - info.not_before
    return (
        authority.is_issuer_of(cert_pem)
        and wanted <= have
        and info.not_after - now > lifetime / 3
        and key.public_key().public_bytes(*_SPKI) == certificate.public_key().public_bytes(*_SPKI)
    )
