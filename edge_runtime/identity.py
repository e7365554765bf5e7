"""Who this node is and how it reaches the broker: the identity file activation writes.

``POST /v1/activate`` answers with the node's namespace, name and MQTT credentials
(DESIGN §7). They are stored in ``DATA_DIR/identity.json`` (mode 0600, in a 0700 dir,
written atomically) and read back by every ``tether edge run``. The password is a
``SecretStr``: it never appears in a repr, a log line or an error message.
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
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from edge_runtime.errors import IdentityError, NotActivated
from edge_runtime.storage import atomic_write_bytes
from schemas.errors import Rejection
from schemas.names import validate_name

IDENTITY_FILENAME = "identity.json"
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


class Identity(BaseModel):
    """The activation answer, validated: names are DNS labels, the username is NS/NODE."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    namespace: str
    node: str
    mqtt: MqttCredentials
    ca: str | None = None
    certificate: str | None = None

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
        return f"tether-edge.{self.namespace}.{self.node}"

    def to_file_json(self) -> dict[str, Any]:
        """The file form, the only place the password is written out."""
        body = self.model_dump(mode="json", exclude_none=True)
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


def save_identity(identity: Identity, data_dir: Path) -> Path:
    """Write ``identity.json`` atomically with mode 0600; returns its path."""
    data_dir = Path(data_dir)
    ensure_private_dir(data_dir)
    path = data_dir / IDENTITY_FILENAME
    body = json.dumps(identity.to_file_json(), indent=2).encode("utf-8")
    try:
        atomic_write_bytes(path, body, mode=0o600)
    except OSError as exc:
        raise IdentityError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return path


def load_identity(data_dir: Path) -> Identity:
    """Read the node's identity; NotActivated if there is none."""
    path = Path(data_dir) / IDENTITY_FILENAME
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise NotActivated() from exc
    except OSError as exc:
        raise IdentityError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        return Identity.model_validate_json(raw)
    except ValidationError as exc:
        raise IdentityError(
            f"{path} is not a valid identity ({describe_errors(exc)}): activate this node again"
        ) from exc
