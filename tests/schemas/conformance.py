"""Loads the conformance vectors, the project's test data for the shadow algebra.

The vectors live in the repository (``tests/schemas/data/shadow-vectors.json``) so that a
clone with nothing beside it runs ``make test``. They are a copy of the shared contract's
``shared/conformance/shadow-vectors.json``; ``test_vectors_copy`` compares the two when
``TETHER_SHARED_VECTORS`` names the shared copy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

VECTORS_PATH = Path(__file__).resolve().parent / "data" / "shadow-vectors.json"


def load_vectors() -> dict[str, Any]:
    return json.loads(VECTORS_PATH.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


VECTORS = load_vectors()


def case_id(case: dict[str, Any]) -> str:
    return str(case["name"])
