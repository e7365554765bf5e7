"""TLS material and clients for the TLS tests: a CA, a broker certificate, node certificates.

Certificates come from the cloud's own CA code (``cloud_api.security.pki``: tests may import every
package), so the broker is tested against exactly what the cloud issues.
"""

from __future__ import annotations

import ssl
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cloud_api.runtime import Cloud
from cloud_api.security.pki import CertificateAuthority, describe
from edge_runtime.activation import new_key_and_csr
from schemas.names import node_identity
from tests.broker.clients import WAIT, Probe


@dataclass(frozen=True)
class ClientFiles:
    certfile: Path
    keyfile: Path
    serial: str


@dataclass(frozen=True)
class Pki:
    """A CA in ``directory`` with the broker's server certificate, and node certificates."""

    directory: Path
    authority: CertificateAuthority

    @classmethod
    def create(cls, directory: Path, *, name: str = "Test CA") -> Pki:
        directory.mkdir(parents=True, exist_ok=True)
        authority = CertificateAuthority.create(common_name=name)
        (directory / "ca.crt").write_text(authority.certificate_pem)
        pki = cls(directory, authority)
        cert, key = authority.issue("broker", sans=["127.0.0.1", "localhost"], days=2, server=True)
        (directory / "server.crt").write_text(cert)
        (directory / "server.key").write_text(key)
        return pki

    @property
    def cafile(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def certfile(self) -> Path:
        return self.directory / "server.crt"

    @property
    def keyfile(self) -> Path:
        return self.directory / "server.key"

    def client(self, common_name: str) -> ClientFiles:
        """A client certificate with CN ``common_name`` for a key made here (as a node does)."""
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .sign(key, hashes.SHA256())
        )
        csr_pem = csr.public_bytes(serialization.Encoding.PEM).decode()
        cert = self.authority.sign_csr(csr_pem, common_name=common_name, days=1)
        stem = self.directory / f"client-{uuid.uuid4().hex[:8]}"
        certfile, keyfile = stem.with_suffix(".crt"), stem.with_suffix(".key")
        certfile.write_text(cert)
        keyfile.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return ClientFiles(certfile, keyfile, describe(cert).serial)


def client_context(cafile: Path, client: ClientFiles | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(cafile))
    if client is not None:
        context.load_cert_chain(str(client.certfile), str(client.keyfile))
    return context


class TlsProbe(Probe):
    """A :class:`Probe` over TLS; ``connect`` returns None when TLS refused the client."""

    def __init__(
        self,
        port: int,
        context: ssl.SSLContext,
        username: str | None = None,
        password: str | None = None,
        *,
        client_id: str | None = None,
        clean_session: bool = True,
    ) -> None:
        super().__init__(port, username, password, client_id=client_id, clean_session=clean_session)
        self.client.tls_set_context(context)
        self.lost = False
        self.client.on_disconnect = self._on_lost

    def _on_lost(self, *_args: object) -> None:
        self.lost = True
        self._answered.set()

    def wait_lost(self, timeout: float = WAIT) -> bool:
        """Whether the broker dropped this client within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not self.lost and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.lost

    def connect(self) -> mqtt.ReasonCode | None:  # type: ignore[override]
        try:
            self.client.connect("127.0.0.1", self.port, keepalive=30)
        except (ssl.SSLError, OSError):
            return None  # the handshake failed (TLS 1.2, or a bad server certificate)
        self.client.loop_start()
        assert self._answered.wait(WAIT), "no CONNACK and no disconnect"
        return self.connack  # None: TLS 1.3 lets the server refuse after the handshake


def certified_node(cloud: Cloud, node: str, directory: Path) -> ClientFiles:
    """``default/node`` activated with a CSR, as ``tether edge activate --node`` does: its
    certificate and key files in ``directory``."""
    cloud.create_node(node)
    key_pem, csr = new_key_and_csr(node_identity("default", node))
    answer = cloud.activate(cloud.issue_activation(node).token, csr=csr)
    assert answer.certificate is not None
    certfile, keyfile = directory / f"{node}.crt", directory / f"{node}.key"
    certfile.write_text(answer.certificate)
    keyfile.write_bytes(key_pem)
    return ClientFiles(certfile, keyfile, describe(answer.certificate).serial)
