"""The shared conformance vectors, run against the pure shadow algebra."""

from __future__ import annotations

from typing import Any

import pytest

from schemas.errors import Rejection
from schemas.shadow import ShadowDocument, apply_update, compute_delta, parse_update_request
from tests.schemas.conformance import VECTORS, case_id


@pytest.mark.parametrize("case", VECTORS["delta"], ids=case_id)
def test_delta_vectors(case: dict[str, Any]) -> None:
    assert compute_delta(case["desired"], case["reported"]) == case["delta"]


@pytest.mark.parametrize("case", VECTORS["update"], ids=case_id)
def test_update_vectors(case: dict[str, Any]) -> None:
    before = case["before"]
    doc = ShadowDocument(desired=before["desired"], reported=before["reported"], version=before["version"])
    expect = case["expect"]
    if "error" in expect:
        with pytest.raises(Rejection) as caught:
            apply_update(doc, parse_update_request(case["request"]), now=1)
        assert caught.value.code == expect["error"]
        # a rejection leaves the document as it was (documents are immutable values)
        assert doc.desired == before["desired"] and doc.reported == before["reported"]
        return
    outcome = apply_update(doc, parse_update_request(case["request"]), now=1)
    state = outcome.document.to_json()["state"]
    assert state["desired"] == expect["desired"]
    assert state["reported"] == expect["reported"]
    assert state["delta"] == expect["delta"]
    assert outcome.document.version == expect["version"]
