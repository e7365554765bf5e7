"""``GET /v1/broker/crl``: the CA's revocation list for a broker that checks certificates
itself (Mosquitto's ``crlfile``), and ``CertificateAuthority.revocation_list`` under it."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import update

from cloud_api.runtime import Cloud
from cloud_api.security.pki import CertificateAuthority
from cloud_api.settings import CloudSettings
from cloud_api.store.models import NodeCertificate

URL = "/v1/broker/crl"
NODES = "/v1/namespaces/default/nodes"


@pytest.fixture
def cloud(make_settings: Callable[..., CloudSettings]) -> Iterator[Cloud]:
    """A cloud that signs CSRs (it advertises a TLS broker); real time, for expiry."""
    with Cloud(make_settings(advertised_mqtts_url="mqtts://127.0.0.1:8883")) as opened:
        yield opened


def certified_node(cloud: Cloud, node: str) -> int:
    """Activate ``default/node`` with a CSR, as a node does; its certificate's serial."""
    cloud.create_node(node)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"default/{node}")])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    answer = cloud.activate(
        cloud.issue_activation(node).token,
        csr=csr.public_bytes(serialization.Encoding.PEM).decode(),
    )
    assert answer.certificate is not None
    return x509.load_pem_x509_certificate(answer.certificate.encode()).serial_number


def fetch(client: httpx.Client, cloud: Cloud) -> x509.CertificateRevocationList:
    """The CRL the API answers, checked to be PEM, fresh and signed by the cloud's CA."""
    response = client.get(URL)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-pem-file"
    assert response.headers["cache-control"] == "no-store"
    crl = x509.load_pem_x509_crl(response.content)
    ca = x509.load_pem_x509_certificate(cloud.authority.certificate_pem.encode())
    assert crl.issuer == ca.subject
    assert crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    now = dt.datetime.now(dt.UTC)
    assert crl.next_update_utc is not None
    assert crl.last_update_utc <= now < crl.next_update_utc
    return crl


def test_with_no_revocation_the_crl_is_empty_and_valid(cloud: Cloud, api: httpx.Client) -> None:
    certified_node(cloud, "n1")
    assert len(fetch(api, cloud)) == 0


def test_the_crl_lists_exactly_the_revoked_certificates_not_yet_expired(
    cloud: Cloud, api: httpx.Client
) -> None:
    kept, revoked, expired, deleted = (certified_node(cloud, n) for n in ("n1", "n2", "n3", "n4"))
    before = int(time.time())
    assert api.post(f"{NODES}/n2/revoke").status_code == 204
    assert api.delete(f"{NODES}/n4").status_code == 204  # deleting revokes too
    cloud.revoke_node("n3")
    with cloud.store.session() as session:  # n3's certificate ran out: nothing to list
        session.exec(
            update(NodeCertificate)
            .where(NodeCertificate.serial == format(expired, "x"))  # type: ignore[arg-type]
            .values(not_after=before - 1)
        )
        session.commit()
    crl = fetch(api, cloud)
    assert {entry.serial_number for entry in crl} == {revoked, deleted}
    assert kept not in {entry.serial_number for entry in crl}
    entry = crl.get_revoked_certificate_by_serial_number(revoked)
    assert entry is not None
    assert before - 1 <= entry.revocation_date_utc.timestamp() <= time.time() + 1


def test_only_an_admin_token_gets_the_crl(
    cloud: Cloud, api: httpx.Client, anonymous: httpx.Client, api_url: str
) -> None:
    assert anonymous.get(URL).status_code == 401
    assert anonymous.get(URL, headers={"Authorization": "Bearer wrong"}).status_code == 401
    for role in ("viewer", "editor"):
        issued = api.post("/v1/tokens", json={"role": role, "namespaces": ["default"]}).json()
        headers = {"Authorization": f"Bearer {issued['token']}"}
        with httpx.Client(base_url=api_url, headers=headers, timeout=30) as other:
            answer = other.get(URL)
        assert answer.status_code == 403, role
        assert answer.json()["code"] == 403


@pytest.mark.parametrize("days", [1, 7])
def test_the_authority_signs_the_pairs_it_is_given(days: int) -> None:
    authority = CertificateAuthority.create()
    at = int(time.time()) - 3600
    pem = authority.revocation_list([(0xABC, at), (2**159 - 1, at + 60)], days=days)
    crl = x509.load_pem_x509_crl(pem.encode())
    ca = x509.load_pem_x509_certificate(authority.certificate_pem.encode())
    assert crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    assert not crl.is_signature_valid(
        x509.load_pem_x509_certificate(CertificateAuthority.create().certificate_pem.encode())
        .public_key()  # type: ignore[arg-type]
    )
    assert {(e.serial_number, int(e.revocation_date_utc.timestamp())) for e in crl} == {
        (0xABC, at), (2**159 - 1, at + 60)}
    assert crl.next_update_utc is not None
    lifetime = crl.next_update_utc - dt.datetime.now(dt.UTC)
    assert dt.timedelta(days=days) - dt.timedelta(minutes=1) < lifetime <= dt.timedelta(days=days)
    assert crl.last_update_utc < dt.datetime.now(dt.UTC)  # a broker a little behind accepts it
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert abs(number - time.time()) < 60
    with pytest.raises(ValueError, match="at least one day"):
        authority.revocation_list([], days=0)
