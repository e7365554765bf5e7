"""Random secrets, their stored form, and the secret files of the data dir.

Every secret the cloud hands out (API tokens, activation tokens, node MQTT passwords, the
bridge password) is 256 bits from ``secrets``; only its SHA-256 is stored. A slow password
hash (bcrypt, scrypt) protects low-entropy human passwords against guessing; against 256
random bits guessing is hopeless either way, so a single SHA-256 is enough and keeps MQTT
authentication (once per connect, thousands of nodes) cheap. Comparisons are constant-time.

A broker that checks passwords itself and cannot ask the cloud (NATS before 2.10) needs a
hash in a form it reads: bcrypt (``broker_hash``), kept beside the SHA-256 of each node
password and handed to the broker's configuration (``tether broker nats-config``), never
the password. The cost is low (``BROKER_HASH_ROUNDS``) for the same reason as above: the
broker pays it at every connect, and 256 random bits cannot be guessed at any cost.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

import bcrypt

from cloud_api.errors import ConfigError

SECRET_BYTES = 32  # 256 bits
BROKER_HASH_ROUNDS = 6  # bcrypt's log2 cost: ~3 ms per connect in the broker
_BCRYPT_ALPHABET = b"./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def new_secret() -> str:
    """A fresh URL-safe secret of 256 random bits."""
    return secrets.token_urlsafe(SECRET_BYTES)


def hash_secret(secret: str) -> str:
    """The stored form of a secret: SHA-256, hex."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def broker_hash(secret: str, *, deterministic: bool = False) -> str:
    """bcrypt of ``secret`` (``$2b$06$...``), as NATS reads in a user's ``password``.

    ``deterministic``: the salt is derived from the secret, so every replica renders the
    same hash of the same secret (the bridge password, hashed on demand) and a generated
    broker configuration changes only when the users do. Fine for a 256-bit secret only."""
    if deterministic:
        digest = hashlib.sha256(b"tether-broker-salt:" + secret.encode()).digest()[:16]
        salt_chars = base64.b64encode(digest).translate(bytes.maketrans(
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
            _BCRYPT_ALPHABET))[:22]
        salt = f"$2b${BROKER_HASH_ROUNDS:02d}$".encode() + salt_chars
    else:
        salt = bcrypt.gensalt(BROKER_HASH_ROUNDS)
    return bcrypt.hashpw(secret.encode("utf-8", "surrogatepass"), salt).decode()


def secret_matches(secret: str, digest: str) -> bool:
    """Whether ``secret`` hashes to ``digest``, in constant time."""
    return hmac.compare_digest(hash_secret(secret), digest)


def same_secret(given: str, expected: str) -> bool:
    """Compare two plaintext secrets in constant time (the bridge password)."""
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode("utf-8"))


def read_or_create_secret_file(path: Path) -> tuple[str, bool]:
    """The secret held in ``path`` (mode 0600), creating it with a new secret if missing.

    Returns (secret, created). Creation is atomic: the secret is written and fsynced to a
    temporary file which is then hard-linked into place, so two processes starting on one
    data dir agree on one secret and no reader ever sees a half-written file.
    """
    try:
        return _read_secret(path), False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = new_secret()
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(secret + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            return _read_secret(path), False  # another process won the race
    finally:
        temporary.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return secret, True


def _read_secret(path: Path) -> str:
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)  # never leave a secret readable by others
    secret = path.read_text(encoding="utf-8").strip()
    if not secret:
        raise ConfigError(f"{path} is empty: delete it and restart to generate a new secret")
    return secret


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
