"""Who this node is and how it reaches the broker: the identity file activation writes.

``POST /v1/activate`` answers with the node's namespace, name and MQTT credentials
(DESIGN §7). They are stored in ``DATA_DIR/identity.json`` (mode 0600, in a 0700 dir,
written atomically) and read back by every ``tether edge run``. The password is a
``SecretStr``: it never appears in a repr, a log line or an error message.

A node activated with a CSR has no password but a key it made itself: ``node.key``
(0600, written before anything else), ``node.crt`` and ``ca.crt`` beside the identity
file, which is written last and so marks a complete activation. ``Identity.tls`` holds
those paths once loaded (the PEMs are not copied into ``identity.json``).

A renewal (``edge_runtime.renewal``) swaps in a new key and certificate with
``save_renewed_certificate``: both are first written beside the current ones as
``*.next``, then renamed over them, key first. ``finish_pending_renewal`` completes (or
drops) a swap a crash interrupted, so the key and certificate never stay mismatched.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from edge_runtime.errors import IdentityError, NotActivated
from edge_runtime.storage import atomic_write_bytes
from schemas.errors import Rejection
from schemas.names import node_client_id, validate_name

IDENTITY_FILENAME = "identity.json"
KEY_FILENAME = "node.key"
CERT_FILENAME = "node.crt"
CA_FILENAME = "ca.crt"
NEXT_SUFFIX = ".next"
MQTT_SCHEMES = {"mqtt": 1883, "mqtts": 8883}


class MqttCredentials(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    url: str
    username: str
    password: SecretStr | None = None

    @field_validator("url")
    @classmethod
    def _mqtt_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in MQTT_SCHEMES or not parts.hostname:
            raise ValueError(
                f"broker URL {value!r} must look like mqtt://HOST:PORT or mqtts://HOST:PORT"
            )
        _ = parts.port  # raises ValueError on a bad port
        return value

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or MQTT_SCHEMES[parts.scheme]

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme == "mqtts"


class TlsFiles(BaseModel):
    """Where this node's CA, certificate and private key are (paths, never the PEMs)."""

    model_config = ConfigDict(frozen=True)

    cafile: Path
    certfile: Path | None = None
    keyfile: Path | None = None


class Identity(BaseModel):
    """The activation answer, validated: names are DNS labels, the username is NS/NODE."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    namespace: str
    node: str
    mqtt: MqttCredentials
    ca: str | None = None
    certificate: str | None = None
    cloud: str | None = None
    """The cloud API URL it was activated at (where it renews its certificate)."""
    tls: TlsFiles | None = Field(default=None, exclude=True)

    @field_validator("namespace", "node")
    @classmethod
    def _dns_label(cls, value: str) -> str:
        try:
            return validate_name(value)
        except Rejection as exc:
            raise ValueError(exc.message) from exc

    @model_validator(mode="after")
    def _username_is_identity(self) -> Identity:
        if self.mqtt.username != f"{self.namespace}/{self.node}":
            raise ValueError(
                f"MQTT username {self.mqtt.username!r} is not {self.namespace}/{self.node}"
            )
        return self

    @property
    def client_id(self) -> str:
        """Stable MQTT client id, so the broker keeps this node's persistent session."""
        return node_client_id(self.namespace, self.node)

    @property
    def uses_certificate(self) -> bool:
        return self.tls is not None and self.tls.certfile is not None

    def to_file_json(self) -> dict[str, Any]:
        """The file form, the only place the password is written out (PEMs go to files)."""
        body = self.model_dump(mode="json", exclude_none=True, exclude={"ca", "certificate"})
        if self.mqtt.password is not None:
            body["mqtt"]["password"] = self.mqtt.password.get_secret_value()
        return body


def describe_errors(exc: ValidationError) -> str:
    """pydantic's errors as one line, without the input values (they may hold secrets)."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}" for err in exc.errors()
    )


def ensure_private_dir(data_dir: Path) -> None:
    """Create the data dir with mode 0700 (and tighten it if it exists)."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(data_dir, 0o700)
    except OSError as exc:
        raise IdentityError(
            f"cannot prepare the data dir {data_dir}: {exc.strerror or exc}"
        ) from exc


def save_private_key(key_pem: bytes, data_dir: Path) -> Path:
    """Write the node's private key (mode 0600) before its certificate exists."""
    data_dir = Path(data_dir)
    ensure_private_dir(data_dir)
    return _write(data_dir / KEY_FILENAME, key_pem, mode=0o600)


def save_identity(identity: Identity, data_dir: Path) -> Path:
    """Write ``ca.crt`` and ``node.crt`` if the identity has them, then ``identity.json``
    (0600), each atomically; returns the identity file's path."""
    data_dir = Path(data_dir)
    ensure_private_dir(data_dir)
    if identity.ca is not None:
        _write(data_dir / CA_FILENAME, identity.ca.encode("ascii"), mode=0o644)
    if identity.certificate is not None:
        _write(data_dir / CERT_FILENAME, identity.certificate.encode("ascii"), mode=0o644)
    body = json.dumps(identity.to_file_json(), indent=2).encode("utf-8")
    return _write(data_dir / IDENTITY_FILENAME, body, mode=0o600)


def _write(path: Path, body: bytes, *, mode: int) -> Path:
    try:
        atomic_write_bytes(path, body, mode=mode)
    except OSError as exc:
        raise IdentityError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return path


def save_renewed_certificate(data_dir: Path, *, key_pem: bytes, cert_pem: str, ca_pem: str) -> None:
    """Replace ``node.key``/``node.crt`` (and ``ca.crt``) with a renewed pair, each file
    atomically and the pair recoverably (see ``finish_pending_renewal``)."""
    data_dir = Path(data_dir)
    _write(data_dir / (KEY_FILENAME + NEXT_SUFFIX), key_pem, mode=0o600)
    _write(data_dir / (CERT_FILENAME + NEXT_SUFFIX), cert_pem.encode("ascii"), mode=0o644)
    _write(data_dir / CA_FILENAME, ca_pem.encode("ascii"), mode=0o644)
    finish_pending_renewal(data_dir)


def finish_pending_renewal(data_dir: Path) -> bool:
    """Complete an interrupted swap: a ``node.crt.next`` means its key is in place or in
    ``node.key.next``; a lone ``node.key.next`` (no certificate came) is dropped.
    Returns whether a renewed pair was put in place."""
    data_dir = Path(data_dir)
    key_next = data_dir / (KEY_FILENAME + NEXT_SUFFIX)
    cert_next = data_dir / (CERT_FILENAME + NEXT_SUFFIX)
    try:
        if not cert_next.exists():
            key_next.unlink(missing_ok=True)
            return False
        if key_next.exists():
            os.replace(key_next, data_dir / KEY_FILENAME)
        os.replace(cert_next, data_dir / CERT_FILENAME)
    except OSError as exc:
        raise IdentityError(f"cannot put the renewed certificate in place in {data_dir}: "
                            f"{exc.strerror or exc}") from exc
    return True


def load_identity(data_dir: Path) -> Identity:
    """Read the node's identity (with its TLS files, if any); NotActivated if there is none."""
    data_dir = Path(data_dir)
    path = data_dir / IDENTITY_FILENAME
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise NotActivated() from exc
    except OSError as exc:
        raise IdentityError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        identity = Identity.model_validate_json(raw)
    except ValidationError as exc:
        raise IdentityError(
            f"{path} is not a valid identity ({describe_errors(exc)}): activate this node again"
        ) from exc
    return _with_tls_files(identity, data_dir)


def _with_tls_files(identity: Identity, data_dir: Path) -> Identity:
    cafile, certfile, keyfile = (data_dir / n for n in (CA_FILENAME, CERT_FILENAME, KEY_FILENAME))
    if not cafile.exists():
        return identity
    try:
        ca = cafile.read_text(encoding="ascii")
        certificate = certfile.read_text(encoding="ascii") if certfile.exists() else None
    except (OSError, UnicodeDecodeError) as exc:
        raise IdentityError(f"cannot read the TLS files in {data_dir}: {exc}") from exc
    if certificate is not None and not keyfile.exists():
        raise IdentityError(f"{certfile} has no {KEY_FILENAME} beside it: activate this node again")
    tls = TlsFiles(
        cafile=cafile,
        certfile=certfile if certificate is not None else None,
        keyfile=keyfile if certificate is not None else None,
    )
    return identity.model_copy(update={"ca": ca, "certificate": certificate, "tls": tls})
