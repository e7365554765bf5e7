"""Turning a one-time activation token into this node's identity (DESIGN §7).

The cloud hands an operator an install command with a one-time token; ``activate``
exchanges it at ``POST {cloud}/v1/activate`` for the node's namespace, name and MQTT
credentials and stores them with ``save_identity``. Every failure becomes one
``ActivationError`` line that says what to do next; the password is never logged.

With ``identity="NS/NODE"`` (what ``tether edge activate --node NS/NODE`` does unless
``--password``; the install command carries both) the node makes an ECDSA P-256 key,
writes it (0600), sends only a CSR for it with that CN, and stores the certificate and
the CA it gets back. The key never leaves the node; the cloud refuses a CSR whose CN is
not the token's node.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import ValidationError

from edge_runtime.errors import ActivationError
from edge_runtime.identity import (
    Identity,
    describe_errors,
    load_identity,
    save_identity,
    save_private_key,
)
from schemas.names import parse_node_identity

log = logging.getLogger(__name__)

ACTIVATE_PATH = "/v1/activate"
REFUSED_MESSAGE = (
    "the activation token was refused (used or expired): ask for a new one with "
    "`GET /v1/namespaces/NS/nodes/NODE/init` on the cloud API (or the node's install command)"
)


def _activation_url(cloud_url: str) -> str:
    parts = urlsplit(cloud_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ActivationError(f"invalid cloud URL {cloud_url!r}: use http(s)://HOST[:PORT]")
    return cloud_url.rstrip("/") + ACTIVATE_PATH


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip().splitlines()[0][:200] if response.text.strip() else ""
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    return ""


def new_key_and_csr(identity: str) -> tuple[bytes, str]:
    """A fresh ECDSA P-256 key (PKCS#8 PEM) and a CSR for it with CN ``identity``."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity)]))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, csr.public_bytes(serialization.Encoding.PEM).decode("ascii")


def activate(
    cloud_url: str,
    token: str,
    data_dir: Path,
    *,
    identity: str | None = None,
    timeout: float = 10.0,
    verify: ssl.SSLContext | bool = True,
    transport: httpx.BaseTransport | None = None,
) -> Identity:
    """Exchange ``token`` for this node's identity and store it in ``data_dir``.

    With ``identity`` (``NS/NODE``) the node gets a client certificate for a key made
    here; without, a password. ``verify``: an SSL context trusting an HTTPS cloud's CA.
    """
    url = _activation_url(cloud_url)
    if not token.strip():
        raise ActivationError(
            "the activation token is empty: pass --token T from the install command"
        )
    body = {"token": token.strip()}
    if identity is not None:
        if parse_node_identity(identity) is None:
            raise ActivationError(f"--node {identity!r} is not NAMESPACE/NODE")
        key_pem, body["csr"] = new_key_and_csr(identity)
        save_private_key(key_pem, Path(data_dir))
    try:
        with httpx.Client(timeout=timeout, transport=transport, verify=verify) as client:
            response = client.post(url, json=body)
    except httpx.TimeoutException as exc:
        raise ActivationError(
            f"the cloud at {cloud_url} did not answer within {timeout:g} s"
        ) from exc
    except httpx.HTTPError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ActivationError(f"cannot reach the cloud at {cloud_url}: {reason}") from exc

    if response.status_code == 401:
        raise ActivationError(REFUSED_MESSAGE)
    if response.status_code != 200:
        detail = _error_message(response)
        raise ActivationError(
            f"activation failed: the cloud answered {response.status_code}"
            + (f": {detail}" if detail else "")
        )
    try:
        answer = Identity.model_validate_json(response.content)
    except ValidationError as exc:
        raise ActivationError(
            f"the cloud's activation answer is not usable ({describe_errors(exc)})"
        ) from exc
    if identity is not None and (answer.certificate is None or answer.ca is None):
        raise ActivationError("the cloud answered a CSR without a certificate and its CA")
    answer = answer.model_copy(update={"cloud": cloud_url.rstrip("/")})
    path = save_identity(answer, Path(data_dir))
    log.info("activated as %s/%s; identity stored in %s", answer.namespace, answer.node, path)
    return load_identity(Path(data_dir)) if identity is not None else answer
