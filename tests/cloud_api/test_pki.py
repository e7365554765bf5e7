"""The CA: made once and reloaded, CSRs checked (CN, key strength, signature), server certs."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cloud_api.errors import CloudError, ConfigError
from cloud_api.security.pki import CertificateAuthority, describe


def csr_for(common_name: str, key: object | None = None) -> str:
    key = key or ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .sign(key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture(scope="module")
def authority() -> CertificateAuthority:
    return CertificateAuthority.create()


def test_made_once_private_and_reloaded(tmp_path: Path) -> None:
    first = CertificateAuthority.load_or_create(tmp_path / "ca")
    assert (tmp_path / "ca" / "ca.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "ca").stat().st_mode & 0o777 == 0o700
    again = CertificateAuthority.load_or_create(tmp_path / "ca")
    assert again.certificate_pem == first.certificate_pem
    assert describe(first.certificate_pem).common_name == "Tether CA"


def test_a_lone_ca_file_is_a_config_error(tmp_path: Path) -> None:
    CertificateAuthority.load_or_create(tmp_path / "ca")
    (tmp_path / "ca" / "ca.key").unlink()
    with pytest.raises(ConfigError, match="only one of"):
        CertificateAuthority.load_or_create(tmp_path / "ca")


def test_a_node_certificate_is_a_short_client_certificate(authority: CertificateAuthority) -> None:
    pem = authority.sign_csr(csr_for("ns/node-1"), common_name="ns/node-1", days=30)
    info = describe(pem)
    assert info.common_name == "ns/node-1" and info.issuer == "CN=Tether CA"
    assert 29 * 86400 < info.not_after - info.not_before <= 30 * 86400 + 600
    cert = x509.load_pem_x509_certificate(pem.encode())
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert authority.is_issuer_of(pem)
    assert not CertificateAuthority.create().is_issuer_of(pem)


@pytest.mark.parametrize(
    ("csr", "message"),
    [
        (lambda: csr_for("ns/other"), "not this node's identity"),
        (lambda: csr_for("ns/node-1", rsa.generate_private_key(65537, 1024)), "at least 2048"),
        (lambda: csr_for("ns/node-1", ec.generate_private_key(ec.SECP192R1())), "not accepted"),
        (lambda: "not a csr", "not a PEM"),
    ],
)
def test_bad_csrs_are_refused(authority: CertificateAuthority, csr: object, message: str) -> None:
    with pytest.raises(CloudError, match=message) as info:
        authority.sign_csr(csr(), common_name="ns/node-1", days=1)  # type: ignore[operator]
    assert info.value.code == 400


def test_server_certificates_carry_their_sans(authority: CertificateAuthority) -> None:
    cert, key = authority.issue("broker", sans=["127.0.0.1", "mqtt.example.com"], days=10, server=True)
    info = describe(cert)
    assert set(info.sans) == {"127.0.0.1", "mqtt.example.com"}
    assert "PRIVATE KEY" in key and "PRIVATE KEY" not in cert
    usage = x509.load_pem_x509_certificate(cert.encode()).extensions.get_extension_for_class(
        x509.ExtendedKeyUsage
    )
    assert list(usage.value) == [ExtendedKeyUsageOID.SERVER_AUTH]
