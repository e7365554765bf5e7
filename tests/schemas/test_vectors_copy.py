"""The repository's copy of the conformance vectors is byte-identical to the shared one.

Opt-in: the suite never reads outside the repository on its own, since a user's clone has
nothing beside it. Name the shared contract's ``conformance/shadow-vectors.json`` in
``TETHER_SHARED_VECTORS`` to compare with it (``TETHER_SHARED_VECTORS=PATH make test``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.schemas.conformance import VECTORS_PATH

SHARED_VECTORS_ENV = "TETHER_SHARED_VECTORS"


def test_vectors_copy_matches_shared() -> None:
    named = os.environ.get(SHARED_VECTORS_ENV)
    if not named:
        pytest.skip(f"set {SHARED_VECTORS_ENV} to the shared shadow-vectors.json to compare with")
    shared = Path(named)
    assert shared.is_file(), f"{SHARED_VECTORS_ENV}={named}: no such file; name the shared copy"
    assert VECTORS_PATH.read_bytes() == shared.read_bytes(), (
        f"{VECTORS_PATH} differs from {shared}: copy the shared file over it"
    )
