"""The repository's copy of the conformance vectors is byte-identical to the shared one."""

from __future__ import annotations

import pytest

from tests.schemas.conformance import SHARED_VECTORS_PATH, VECTORS_PATH


def test_vectors_copy_matches_shared() -> None:
    if not SHARED_VECTORS_PATH.exists():
        pytest.skip(f"no shared copy at {SHARED_VECTORS_PATH} to compare with")
    assert VECTORS_PATH.read_bytes() == SHARED_VECTORS_PATH.read_bytes(), (
        f"{VECTORS_PATH} differs from {SHARED_VECTORS_PATH}: copy the shared file over it"
    )
