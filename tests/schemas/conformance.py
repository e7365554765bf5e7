"""Loads the shared conformance vectors (../shared/conformance/shadow-vectors.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

_CANDIDATES = [
    Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / "shadow-vectors.json",
]


def load_vectors() -> dict[str, Any]:
    for path in _CANDIDATES:
        if path.exists():
            return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]
    pytest.fail(f"conformance vectors not found at {_CANDIDATES[0]}: shared/ must sit beside the repo")


VECTORS = load_vectors()


def case_id(case: dict[str, Any]) -> str:
    return str(case["name"])
