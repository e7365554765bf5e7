"""Secrets: random, stored hashed, and the secret files of the data dir (0600, atomic)."""

from __future__ import annotations

import hashlib
import stat
import threading
from pathlib import Path

import pytest

from cloud_api.errors import ConfigError
from cloud_api.security.credentials import (
    hash_secret,
    new_secret,
    read_or_create_secret_file,
    same_secret,
    secret_matches,
)


def test_secrets_are_256_random_bits_and_stored_as_sha256() -> None:
    secret = new_secret()
    assert len(secret) == 43 and secret != new_secret()
    assert hash_secret(secret) == hashlib.sha256(secret.encode()).hexdigest()
    assert secret_matches(secret, hash_secret(secret))
    assert not secret_matches(secret + "x", hash_secret(secret))
    assert same_secret("abc", "abc")
    assert not same_secret("abc", "abd") and not same_secret("\ud800", "x")


def test_a_secret_file_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "bridge.secret"
    secret, created = read_or_create_secret_file(path)
    assert created and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_or_create_secret_file(path) == (secret, False)
    assert sorted(p.name for p in path.parent.iterdir()) == ["bridge.secret"]  # no temporary left


def test_concurrent_creators_agree_on_one_secret(tmp_path: Path) -> None:
    path = tmp_path / "admin.token"
    results: list[str] = []
    def create() -> None:
        results.append(read_or_create_secret_file(path)[0])

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1 and path.read_text().strip() == results[0]


def test_a_readable_secret_file_is_tightened_and_an_empty_one_refused(tmp_path: Path) -> None:
    path = tmp_path / "admin.token"
    path.write_text("s3cret\n")
    path.chmod(0o644)
    assert read_or_create_secret_file(path) == ("s3cret", False)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text("")
    with pytest.raises(ConfigError, match="is empty"):
        read_or_create_secret_file(path)
