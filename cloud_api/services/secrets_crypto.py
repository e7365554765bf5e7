"""Sealing resource content at rest: secrets, registry passwords, certificate keys.

Why it exists: DESIGN §7 says secret values are encrypted at rest and leave the cloud only
to the nodes matched to them. ``SecretBox`` seals a JSON value with Fernet (AES-128-CBC +
HMAC-SHA256) under a key derived from ``settings.secret_key`` or from the file
``DATA_DIR/secret.key`` (made 0600 on first start, like the bridge secret), and keys the
content hashes that decide whether a resource changed, so even the hash of a short secret
cannot be guessed offline. Anyone with the database and without the key learns nothing
but the secret's key names.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from cloud_api.errors import ConfigError
from cloud_api.security.credentials import read_or_create_secret_file
from cloud_api.settings import CloudSettings


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class SecretBox:
    """Seals and opens JSON values; hashes content with a key of its own."""

    def __init__(self, secret: str) -> None:
        material = secret.encode("utf-8")
        fernet_key = hashlib.sha256(b"tether-seal\x00" + material).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(fernet_key))
        self._hash_key = hashlib.sha256(b"tether-hash\x00" + material).digest()

    @classmethod
    def from_settings(cls, settings: CloudSettings) -> SecretBox:
        if settings.secret_key is not None:
            return cls(settings.secret_key.get_secret_value())
        secret, _ = read_or_create_secret_file(settings.secret_key_path)
        return cls(secret)

    def seal(self, value: Any) -> str:
        return self._fernet.encrypt(canonical_json(value)).decode("ascii")

    def open(self, token: str) -> Any:
        try:
            return json.loads(self._fernet.decrypt(token.encode("ascii")))
        except InvalidToken as exc:
            raise ConfigError(
                "a sealed value does not open with this cloud's secret key: "
                "was secret_key (or DATA_DIR/secret.key) changed?"
            ) from exc

    def content_hash(self, value: Any) -> str:
        """A keyed hash of ``value``'s canonical JSON: equal iff the content is equal."""
        return hmac.new(self._hash_key, canonical_json(value), hashlib.sha256).hexdigest()
