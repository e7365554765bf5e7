"""``POST /v1/broker/authenticate`` with ``certificateSerial``: a standalone broker's
revocation check for clients with certificates."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from cloud_api.runtime import Cloud
from cloud_api.security.pki import describe
from cloud_api.settings import CloudSettings
from edge_runtime.activation import new_key_and_csr

URL = "/v1/broker/authenticate"


@pytest.fixture
def cloud(make_settings: Callable[..., CloudSettings]) -> Iterator[Cloud]:
    """A cloud that signs CSRs (it advertises a TLS broker); real time, for expiry."""
    with Cloud(make_settings(advertised_mqtts_url="mqtts://127.0.0.1:8883")) as opened:
        yield opened


def certified_node(cloud: Cloud, node: str) -> str:
    """Activate ``default/node`` with a CSR; its certificate's serial."""
    cloud.create_node(node)
    token = cloud.issue_activation(node).token
    _, csr = new_key_and_csr(f"default/{node}")
    answer = cloud.activate(token, csr=csr)
    assert answer.certificate is not None
    return describe(answer.certificate).serial


def test_a_current_certificate_is_allowed_and_a_revoked_one_refused(
    cloud: Cloud, api: httpx.Client
) -> None:
    serial = certified_node(cloud, "c1")
    ask = {"username": "default/c1", "certificateSerial": serial}
    assert api.post(URL, json=ask).json() == {"allowed": True}
    assert api.post(URL, json={**ask, "certificateSerial": serial.upper()}).status_code == 200
    assert api.post(URL, json={**ask, "username": "default/other"}).status_code == 401
    assert api.post(URL, json={**ask, "certificateSerial": "abc123"}).status_code == 401
    cloud.revoke_node("c1")
    assert api.post(URL, json=ask).status_code == 401


def test_only_an_admin_asks_and_a_password_still_works(
    cloud: Cloud, api: httpx.Client, anonymous: httpx.Client
) -> None:
    serial = certified_node(cloud, "c2")
    ask = {"username": "default/c2", "certificateSerial": serial}
    assert anonymous.post(URL, json=ask).status_code == 401
    bridge = {"username": cloud.settings.mqtt_username, "password": cloud.bridge_password}
    assert api.post(URL, json=bridge).status_code == 200
    assert api.post(URL, json={**bridge, "password": "wrong"}).status_code == 401
