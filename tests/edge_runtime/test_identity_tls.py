"""Activation with a CSR: the key is made here, never sent, and stored beside the certificate."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from cloud_api.security.pki import CertificateAuthority
from edge_runtime.activation import activate
from edge_runtime.errors import ActivationError
from edge_runtime.identity import load_identity

TLS_URL = "mqtts://127.0.0.1:8883"


def signing_cloud(authority: CertificateAuthority, sent: list[dict[str, str]]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        sent.append(body)
        cert = authority.sign_csr(body["csr"], common_name="default/edge-1", days=1)
        return httpx.Response(200, json={
            "namespace": "default", "node": "edge-1",
            "mqtt": {"url": TLS_URL, "username": "default/edge-1"},
            "ca": authority.certificate_pem, "certificate": cert,
        })
    return httpx.MockTransport(handler)


def test_the_key_stays_here_and_the_files_are_private(tmp_path: Path) -> None:
    authority, sent = CertificateAuthority.create(), []
    data_dir = tmp_path / "edge"
    identity = activate("http://cloud.test", "tok", data_dir, identity="default/edge-1",
                        transport=signing_cloud(authority, sent))
    key = (data_dir / "node.key").read_text()
    assert "PRIVATE KEY" in key and key not in json.dumps(sent)
    assert set(sent[0]) == {"token", "csr"}
    assert (data_dir / "node.key").stat().st_mode & 0o777 == 0o600
    assert data_dir.stat().st_mode & 0o777 == 0o700
    assert authority.is_issuer_of((data_dir / "node.crt").read_text())
    assert (data_dir / "ca.crt").read_text() == authority.certificate_pem
    stored = json.loads((data_dir / "identity.json").read_text())
    assert "certificate" not in stored and "password" not in stored["mqtt"]
    loaded = load_identity(data_dir)
    assert loaded == identity and loaded.uses_certificate and loaded.mqtt.tls
    assert loaded.tls is not None and loaded.tls.keyfile == data_dir / "node.key"
    assert loaded.cloud == "http://cloud.test"


def test_a_bad_identity_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    sent: list[dict[str, str]] = []
    with pytest.raises(ActivationError, match="not NAMESPACE/NODE"):
        activate("http://cloud.test", "tok", tmp_path, identity="Bad",
                 transport=signing_cloud(CertificateAuthority.create(), sent))
    assert sent == []
