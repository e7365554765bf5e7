"""The cloud's certificate authority: node client certificates and server certificates.

Why it exists: a node's MQTT identity ``NS/NODE`` (DESIGN §3) is best proven by a client
certificate the broker verifies against *our* CA, with the private key made on the node
and never sent anywhere. This module holds that CA and nothing else (no database, no
HTTP): it signs a node's CSR after checking its common name and key strength, issues
server certificates for the broker and the API, signs revocation lists, and describes a
certificate.

- The CA is made on first start in ``DATA_DIR/ca/`` (``ca.crt``, ``ca.key`` mode 0600,
  in a 0700 directory) or loaded from files an operator supplies.
- Keys made here are ECDSA P-256: small, fast, and accepted by every TLS stack in use.
- A CSR is refused (``CloudError`` 400) if its signature is bad, its CN is not the
  identity asked for, or its key is weak (RSA < 2048 bits, DSA, an unusual curve).
- Node certificates carry the clientAuth EKU only; server certificates serverAuth only.
- A CRL (for a broker such as Mosquitto that checks certificates itself) is valid from a
  little before now for ``CRL_DAYS``; its CRL number is its issue time, so a newer list
  always has a higher number and a later ``last_update``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cloud_api.errors import CloudError, ConfigError
from schemas.errors import ErrorCode

__all__ = [
    "CA_CERT_FILENAME",
    "CA_KEY_FILENAME",
    "CRL_DAYS",
    "CertificateAuthority",
    "CertificateInfo",
    "describe",
    "new_private_key_pem",
]

CA_CERT_FILENAME = "ca.crt"
CA_KEY_FILENAME = "ca.key"
CA_DAYS = 10 * 365
CRL_DAYS = 7  # a broker refuses every certificate once its CRL is past next_update
MIN_RSA_BITS = 2048
STRONG_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)
_BACKDATE = dt.timedelta(minutes=5)  # tolerate clocks a little behind ours


@dataclass(frozen=True)
class CertificateInfo:
    """What ``describe`` tells about a certificate; times are epoch seconds."""

    subject: str
    common_name: str | None
    issuer: str
    sans: tuple[str, ...]
    serial: str  # lower-case hex, no separators
    not_before: int
    not_after: int


def _refuse(message: str) -> CloudError:
    return CloudError(message, code=ErrorCode.BAD_REQUEST)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _common_name(name: x509.Name) -> str | None:
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else None


def _check_key_strength(key: object) -> None:
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise _refuse(f"the CSR's RSA key has {key.key_size} bits: use at least {MIN_RSA_BITS}")
        return
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, STRONG_CURVES):
            raise _refuse(f"the CSR's curve {key.curve.name} is not accepted: use P-256 or P-384")
        return
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return
    if isinstance(key, dsa.DSAPublicKey):
        raise _refuse("DSA keys are not accepted: use ECDSA P-256 or RSA 2048+")
    raise _refuse(f"the CSR's key type {type(key).__name__} is not accepted")


def san_entries(names: Iterable[str]) -> list[x509.GeneralName]:
    entries: list[x509.GeneralName] = []
    for name in dict.fromkeys(names):  # keep order, drop repeats
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return entries


def _pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _key_pem(key: CertificateIssuerPrivateKeyTypes) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def new_private_key_pem() -> str:
    """A fresh ECDSA P-256 private key, PKCS#8 PEM (for tools and tests that need one)."""
    return _key_pem(ec.generate_private_key(ec.SECP256R1()))


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600, atomically (temp file, fsync, rename)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


class CertificateAuthority:
    """One CA certificate and its key; signs node CSRs and issues server certificates."""

    def __init__(self, certificate: x509.Certificate, key: CertificateIssuerPrivateKeyTypes) -> None:
        self._certificate = certificate
        self._key = key

    # -- making and loading ------------------------------------------------------------
    @classmethod
    def create(cls, *, common_name: str = "Tether CA", days: int = CA_DAYS) -> CertificateAuthority:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = _now()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(certificate, key)

    @classmethod
    def load(cls, certfile: Path, keyfile: Path) -> CertificateAuthority:
        """The CA held in two PEM files (an operator's own CA, or one made earlier)."""
        try:
            certificate = x509.load_pem_x509_certificate(Path(certfile).read_bytes())
            key = serialization.load_pem_private_key(Path(keyfile).read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(f"cannot load the CA from {certfile} and {keyfile}: {exc}") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
            raise ConfigError(f"the CA key in {keyfile} is of an unsupported type")
        if key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ) != certificate.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ):
            raise ConfigError(f"the CA key in {keyfile} does not belong to {certfile}")
        return cls(certificate, key)

    @classmethod
    def load_or_create(
        cls, directory: Path, *, common_name: str = "Tether CA"
    ) -> CertificateAuthority:
        """The CA in ``directory`` (``ca.crt`` + ``ca.key``), made there if it is missing."""
        directory = Path(directory)
        certfile, keyfile = directory / CA_CERT_FILENAME, directory / CA_KEY_FILENAME
        if certfile.exists() and keyfile.exists():
            if keyfile.stat().st_mode & 0o077:
                keyfile.chmod(0o600)
            return cls.load(certfile, keyfile)
        if certfile.exists() or keyfile.exists():
            raise ConfigError(
                f"{directory} holds only one of {CA_CERT_FILENAME} and {CA_KEY_FILENAME}: "
                "restore the other or remove both to make a new CA"
            )
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            authority = cls.create(common_name=common_name)
            # key first: a crash in between leaves a lone key, reported above, never a
            # certificate whose key is lost
            _write_private(keyfile, _key_pem(authority._key).encode("ascii"))
            _write_private(certfile, authority.certificate_pem.encode("ascii"))
            certfile.chmod(0o644)
        except OSError as exc:
            raise ConfigError(f"cannot create the CA in {directory}: {exc.strerror or exc}") from exc
        return authority

    # -- what it is --------------------------------------------------------------------
    @property
    def certificate_pem(self) -> str:
        return _pem(self._certificate)

    @property
    def common_name(self) -> str | None:
        return _common_name(self._certificate.subject)

    def is_issuer_of(self, cert_pem: str) -> bool:
        """Whether ``cert_pem`` was signed by this CA (signature checked)."""
        try:
            certificate = x509.load_pem_x509_certificate(cert_pem.encode("ascii"))
            certificate.verify_directly_issued_by(self._certificate)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True

    # -- signing -----------------------------------------------------------------------
    def sign_csr(self, csr_pem: str, *, common_name: str, days: int) -> str:
        """A client certificate for the key in ``csr_pem``; the CN must be ``common_name``.

        Only the CSR's public key is used: its other extensions are ignored, so a node
        cannot ask for a server or CA certificate.
        """
        try:
            csr = x509.load_pem_x509_csr(csr_pem.encode("ascii"))
        except (ValueError, UnicodeEncodeError) as exc:
            raise _refuse("the CSR is not a PEM certificate signing request") from exc
        if not csr.is_signature_valid:
            raise _refuse("the CSR's signature is not valid")
        asked = _common_name(csr.subject)
        if asked != common_name:
            raise _refuse(f"the CSR's common name {asked!r} is not this node's identity {common_name!r}")
        public_key = csr.public_key()
        _check_key_strength(public_key)
        builder = self._builder(common_name, public_key, days=days).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        return _pem(builder.sign(self._key, self._hash()))

    def issue(
        self, common_name: str, *, sans: Iterable[str] = (), days: int, server: bool
    ) -> tuple[str, str]:
        """A new key and a certificate for it: ``(cert_pem, key_pem)``.

        ``server``: serverAuth EKU (the broker, the API) with ``sans`` as DNS names or IP
        addresses; else clientAuth (the cloud bridge, tests).
        """
        key = ec.generate_private_key(ec.SECP256R1())
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = self._builder(common_name, key.public_key(), days=days).add_extension(
            x509.ExtendedKeyUsage([usage]), critical=False
        )
        entries = san_entries(sans)
        if entries:
            builder = builder.add_extension(x509.SubjectAlternativeName(entries), critical=False)
        return _pem(builder.sign(self._key, self._hash())), _key_pem(key)

    def revocation_list(self, revoked: Iterable[tuple[int, int]], *, days: int = CRL_DAYS) -> str:
        """A CRL signed by this CA listing ``revoked`` (serial, revocation epoch seconds), PEM.

        Valid from a little before now (a broker whose clock is behind would otherwise find
        it not yet valid and refuse everyone) until ``days`` from now.
        """
        if days <= 0:
            raise ValueError("a CRL lifetime must be at least one day")
        now = _now().replace(microsecond=0)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self._certificate.subject)
            .last_update(now - _BACKDATE)
            .next_update(now + dt.timedelta(days=days))
            .add_extension(x509.CRLNumber(int(now.timestamp())), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )
        for serial, revoked_at in revoked:
            entry = (
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(dt.datetime.fromtimestamp(revoked_at, dt.UTC))
                .build()
            )
            builder = builder.add_revoked_certificate(entry)
        crl = builder.sign(self._key, self._hash())
        return crl.public_bytes(serialization.Encoding.PEM).decode("ascii")

    def _builder(
        self, common_name: str, public_key: CertificatePublicKeyTypes, *, days: int
    ) -> x509.CertificateBuilder:
        if days <= 0:
            raise ValueError("a certificate lifetime must be at least one day")
        now = _now()
        not_after = min(now + dt.timedelta(days=days), self._certificate.not_valid_after_utc)
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self._certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )

    def _hash(self) -> hashes.SHA256 | None:
        return None if isinstance(self._key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def describe(cert_pem: str) -> CertificateInfo:
    """Subject, SANs, validity, serial and issuer of a PEM certificate."""
    try:
        certificate = x509.load_pem_x509_certificate(cert_pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise _refuse("not a PEM certificate") from exc
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        sans = tuple(str(value) for value in extension.value.get_values_for_type(x509.DNSName)) + tuple(
            str(value) for value in extension.value.get_values_for_type(x509.IPAddress)
        )
    except x509.ExtensionNotFound:
        sans = ()
    return CertificateInfo(
        subject=certificate.subject.rfc4514_string(),
        common_name=_common_name(certificate.subject),
        issuer=certificate.issuer.rfc4514_string(),
        sans=sans,
        serial=format(certificate.serial_number, "x"),
        not_before=int(certificate.not_valid_before_utc.timestamp()),
        not_after=int(certificate.not_valid_after_utc.timestamp()),
    )
