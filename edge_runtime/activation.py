"""Turning a one-time activation token into this node's identity (DESIGN §7).

The cloud hands an operator an install command with a one-time token; ``activate``
exchanges it at ``POST {cloud}/v1/activate`` for the node's namespace, name and MQTT
credentials and stores them with ``save_identity``. Every failure becomes one
``ActivationError`` line that says what to do next; the password is never logged.
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from pydantic import ValidationError

from edge_runtime.errors import ActivationError
from edge_runtime.identity import Identity, describe_errors, save_identity

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


def activate(
    cloud_url: str,
    token: str,
    data_dir: Path,
    *,
    timeout: float = 10.0,
    transport: httpx.BaseTransport | None = None,
) -> Identity:
    """Exchange ``token`` for this node's identity and store it in ``data_dir``."""
    url = _activation_url(cloud_url)
    if not token.strip():
        raise ActivationError(
            "the activation token is empty: pass --token T from the install command"
        )
    try:
        with httpx.Client(timeout=timeout, transport=transport) as client:
            response = client.post(url, json={"token": token.strip()})
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
        identity = Identity.model_validate_json(response.content)
    except ValidationError as exc:
        raise ActivationError(
            f"the cloud's activation answer is not usable ({describe_errors(exc)})"
        ) from exc
    path = save_identity(identity, Path(data_dir))
    log.info("activated as %s/%s; identity stored in %s", identity.namespace, identity.node, path)
    return identity
