"""``POST /v1/activate`` with a CSR; revocation; renewal; the rate limit."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from cloud_api.runtime import Cloud
from cloud_api.security.pki import describe
from cloud_api.settings import CloudSettings
from schemas.errors import Rejection
from tests.cloud_api.conftest import Clock
from tests.cloud_api.test_pki import csr_for

NODES = "/v1/namespaces/default/nodes"
TLS_URL = "mqtts://broker.test:8883"


@pytest.fixture
def clock() -> Clock:
    """Real time: certificates are dated by the real clock, so the cloud must agree."""
    return Clock(time.time())


@pytest.fixture
def cloud(make_settings: Callable[..., CloudSettings], clock: Clock) -> Iterator[Cloud]:
    with Cloud(make_settings(advertised_mqtts_url=TLS_URL), clock=clock) as made:
        yield made


def activate(cloud: Cloud, anonymous: httpx.Client, csr: str | None) -> httpx.Response:
    cloud.create_node("n1", exist_ok=True)
    token = cloud.issue_activation("n1").token
    return anonymous.post("/v1/activate", json={"token": token, **({"csr": csr} if csr else {})})


def test_a_csr_gets_a_certificate_and_no_password(cloud: Cloud, anonymous: httpx.Client) -> None:
    response = activate(cloud, anonymous, csr_for("default/n1"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["mqtt"] == {"url": TLS_URL, "username": "default/n1"}
    assert body["ca"] == cloud.authority.certificate_pem
    serial = describe(body["certificate"]).serial
    assert cloud.authenticate_certificate("default/n1", serial)
    assert not cloud.authenticate_certificate("default/n2", serial)


def test_a_wrong_cn_is_400_and_keeps_the_token(cloud: Cloud, anonymous: httpx.Client) -> None:
    cloud.create_node("n1")
    token = cloud.issue_activation("n1").token
    bad = anonymous.post("/v1/activate", json={"token": token, "csr": csr_for("default/n2")})
    assert bad.status_code == 400 and "identity" in bad.json()["message"]
    good = anonymous.post("/v1/activate", json={"token": token, "csr": csr_for("default/n1")})
    assert good.status_code == 200
    replay = anonymous.post("/v1/activate", json={"token": token, "csr": csr_for("default/n1")})
    assert replay.status_code == 401


def test_revoking_and_deleting_refuse_the_certificate(
    cloud: Cloud, api: httpx.Client, anonymous: httpx.Client
) -> None:
    announced: list[str] = []
    cloud.revocations.subscribe(announced.append)
    serial = describe(activate(cloud, anonymous, csr_for("default/n1")).json()["certificate"]).serial
    assert api.post(f"{NODES}/n1/revoke").status_code == 204
    assert not cloud.authenticate_certificate("default/n1", serial)
    assert announced == ["default/n1"]

    again = describe(activate(cloud, anonymous, csr_for("default/n1")).json()["certificate"]).serial
    assert cloud.authenticate_certificate("default/n1", again)
    assert api.delete(f"{NODES}/n1").status_code == 204
    assert not cloud.authenticate_certificate("default/n1", again)
    cloud.create_node("n1")  # the name reused: the old certificate stays refused
    assert not cloud.authenticate_certificate("default/n1", again)


def test_reactivation_revokes_the_previous_certificate(cloud: Cloud, anonymous: httpx.Client) -> None:
    first = describe(activate(cloud, anonymous, csr_for("default/n1")).json()["certificate"]).serial
    password = activate(cloud, anonymous, None).json()["mqtt"]["password"]
    assert not cloud.authenticate_certificate("default/n1", first)
    assert cloud.authenticate_mqtt("default/n1", password)


def test_renewal_needs_proof_of_the_current_key(cloud: Cloud, anonymous: httpx.Client) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    current = activate(cloud, anonymous, csr_for("default/n1", key)).json()["certificate"]
    new_csr = csr_for("default/n1")
    proof = base64.b64encode(key.sign(new_csr.encode(), ec.ECDSA(hashes.SHA256()))).decode()
    renewed = anonymous.post("/v1/renew", json={"csr": new_csr, "certificate": current, "proof": proof})
    assert renewed.status_code == 200, renewed.text
    serial = describe(renewed.json()["certificate"]).serial
    assert cloud.authenticate_certificate("default/n1", serial)
    assert cloud.authenticate_certificate("default/n1", describe(current).serial)  # no gap

    stranger = ec.generate_private_key(ec.SECP256R1())
    forged = base64.b64encode(stranger.sign(new_csr.encode(), ec.ECDSA(hashes.SHA256()))).decode()
    refused = anonymous.post("/v1/renew", json={"csr": new_csr, "certificate": current, "proof": forged})
    assert refused.status_code == 401


def test_activation_is_rate_limited(cloud: Cloud, anonymous: httpx.Client) -> None:
    # the served app is the `cloud` fixture's, whose limit is 10 per minute per client IP
    codes = [anonymous.post("/v1/activate", json={"token": "nope"}).status_code for _ in range(11)]
    assert codes[:10] == [401] * 10 and codes[10] == 429
    limited = anonymous.post("/v1/activate", json={"token": "nope"})
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1


def test_no_tls_url_means_no_csr(make_settings: Callable[..., CloudSettings], clock: Clock) -> None:
    with Cloud(make_settings(), clock=clock) as plain:
        plain.create_node("n1")
        token = plain.issue_activation("n1").token
        with pytest.raises(Rejection, match="advertised_mqtts_url"):
            plain.activate(token, csr=csr_for("default/n1"))


