"""Renewing the node's client certificate before it expires, without downtime.

A node activated with a CSR holds a certificate of limited lifetime. At about two thirds
of it (``renew_at_fraction``, less a random jitter of up to 5 % of the lifetime so a fleet
activated together does not renew together) the ``CertificateRenewer`` thread makes a new
key and CSR, proves it holds the current key by signing the CSR's PEM with it, and asks
``POST {cloud}/v1/renew`` (the cloud URL activation stored in the identity). The new pair
is written with ``save_renewed_certificate`` (0600 key, atomic, crash-safe), then the MQTT
link is asked to reconnect: it re-reads the files before every connection. The old
certificate stays valid until it expires, so the node is never without a working one.

A failure is logged (never with a key, a CSR or a certificate) and retried with backoff;
it never stops the agent. ``renewal_due`` is the pure part: certificate dates in, time out.
"""

from __future__ import annotations

import base64
import logging
import random
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from edge_runtime.activation import new_key_and_csr
from edge_runtime.errors import EdgeError, RenewalError
from edge_runtime.identity import (
    Identity,
    finish_pending_renewal,
    save_renewed_certificate,
)
from edge_runtime.settings import EdgeSettings
from edge_runtime.sync import Backoff

log = logging.getLogger(__name__)

RENEW_PATH = "/v1/renew"
JITTER_FRACTION = 0.05


def renewal_due(
    not_before: float, not_after: float, *, fraction: float = 2 / 3, jitter: float = 0.0
) -> float:
    """When to renew a certificate valid from ``not_before`` to ``not_after`` (epoch
    seconds): at ``fraction`` of its lifetime, earlier by ``jitter`` (0..1) x 5 % of it."""
    lifetime = max(0.0, not_after - not_before)
    return not_before + lifetime * (fraction - JITTER_FRACTION * min(max(jitter, 0.0), 1.0))


def certificate_dates(certfile: Path) -> tuple[float, float, str]:
    """``(not_before, not_after, serial hex)`` of the PEM certificate in ``certfile``."""
    try:
        certificate = x509.load_pem_x509_certificate(Path(certfile).read_bytes())
    except (OSError, ValueError) as exc:
        raise RenewalError(f"cannot read this node's certificate {certfile}: {exc}") from exc
    return (
        certificate.not_valid_before_utc.timestamp(),
        certificate.not_valid_after_utc.timestamp(),
        format(certificate.serial_number, "x"),
    )


def prove(key_pem: bytes, data: bytes) -> str:
    """Base64 signature of ``data`` with the private key ``key_pem`` (the renewal proof)."""
    key = serialization.load_pem_private_key(key_pem, password=None)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        signature = key.sign(data, ec.ECDSA(hashes.SHA256()))
    elif isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        signature = key.sign(data)
    else:
        raise RenewalError("this node's key is of a type the cloud cannot verify")
    return base64.b64encode(signature).decode("ascii")


class CertificateRenewer:
    """A daemon thread that renews the node's certificate when due, then calls ``on_renewed``."""

    def __init__(
        self,
        identity: Identity,
        settings: EdgeSettings,
        *,
        on_renewed: Callable[[], None],
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 10.0,
    ) -> None:
        if identity.tls is None or identity.tls.certfile is None or identity.tls.keyfile is None:
            raise ValueError("only a node activated with a certificate renews it")
        self._identity, self._settings = identity, settings
        self._tls = identity.tls
        self._data_dir = Path(identity.tls.certfile).parent
        self._on_renewed, self._clock, self._transport = on_renewed, clock, transport
        self._timeout = timeout
        self._jitter = rng()
        self._backoff = Backoff(settings.renew_retry_min_seconds, settings.renew_retry_max_seconds)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.renewals = 0  # certificates obtained so far (observability, tests)

    def due_at(self) -> float:
        not_before, not_after, _ = certificate_dates(self._certfile)
        return renewal_due(not_before, not_after, fraction=self._settings.renew_at_fraction,
                           jitter=self._jitter)

    @property
    def _certfile(self) -> Path:
        assert self._tls.certfile is not None
        return self._tls.certfile

    @property
    def _keyfile(self) -> Path:
        assert self._tls.keyfile is not None
        return self._tls.keyfile

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        if finish_pending_renewal(self._data_dir):
            log.info("completed a certificate renewal that was interrupted")
        self._thread = threading.Thread(target=self._run, name="tether-edge-renewal", daemon=True)
        self._thread.start()

    def stop(self, *, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                wait = self.due_at() - self._clock()
                if wait <= 0:
                    self.renew()
                    self._backoff.reset()
                    continue
                wait = min(wait, self._settings.renew_check_seconds)
            except EdgeError as exc:
                wait = self._backoff.next()
                log.warning("certificate renewal failed: %s; next attempt in %.0f s", exc, wait)
            except Exception:  # the agent must outlive any renewal bug
                wait = self._backoff.next()
                log.exception("certificate renewal failed; next attempt in %.0f s", wait)
            self._stopping.wait(wait)

    # -- one renewal -----------------------------------------------------------------------
    def renew(self) -> None:
        """Get a new certificate for a new key, put both in place, ask for a reconnect."""
        cloud = self._identity.cloud
        if not cloud:
            raise RenewalError("the identity does not say which cloud activated this node: "
                               "activate it again to enable certificate renewal")
        try:
            current_key = self._keyfile.read_bytes()
            current_cert = self._certfile.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise RenewalError(f"cannot read this node's key and certificate: {exc}") from exc
        key_pem, csr = new_key_and_csr(self._identity.mqtt.username)
        body = {"csr": csr, "certificate": current_cert, "proof": prove(current_key, csr.encode("ascii"))}
        url = cloud.rstrip("/") + RENEW_PATH
        try:
            with httpx.Client(timeout=self._timeout, transport=self._transport,
                              verify=self._verify()) as client:
                response = client.post(url, json=body)
        except httpx.HTTPError as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise RenewalError(f"cannot reach the cloud at {cloud}: {reason}") from exc
        if response.status_code != 200:
            raise RenewalError(f"the cloud at {cloud} answered {response.status_code} to the renewal")
        try:
            answer = response.json()
            cert_pem, ca_pem = answer["certificate"], answer["ca"]
            certificate = x509.load_pem_x509_certificate(cert_pem.encode("ascii"))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise RenewalError("the cloud's renewal answer is not a certificate") from exc
        if not _same_public_key(certificate, key_pem):
            raise RenewalError("the renewed certificate is not for the key made for it")
        save_renewed_certificate(self._data_dir, key_pem=key_pem, cert_pem=cert_pem, ca_pem=ca_pem)
        self.renewals += 1
        log.info("renewed this node's certificate (serial %x, valid until %s); reconnecting",
                 certificate.serial_number, certificate.not_valid_after_utc.isoformat())
        self._on_renewed()

    def _verify(self) -> ssl.SSLContext:
        """The system's CAs and this node's CA (a cloud served with a certificate of its own CA)."""
        context = ssl.create_default_context()
        try:
            context.load_verify_locations(cafile=str(self._tls.cafile))
        except (OSError, ssl.SSLError) as exc:
            raise RenewalError(f"cannot read the CA {self._tls.cafile}: {exc}") from exc
        return context


def _same_public_key(certificate: x509.Certificate, key_pem: bytes) -> bool:
    key = serialization.load_pem_private_key(key_pem, password=None)
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return bool(certificate.public_key().public_bytes(*spki) == key.public_key().public_bytes(*spki))
