"""The shadow algebra beyond the vectors: metadata, payloads, writers, limits, properties."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.errors import ErrorCode, Rejection
from schemas.shadow import (
    ShadowDocument,
    ShadowLimits,
    apply_update,
    compute_delta,
    depth,
    json_equal,
    merge_diff,
    merge_patch,
    parse_update_request,
)

# -- strategies ------------------------------------------------------------------------
keys = st.text(alphabet="abcdef", min_size=1, max_size=3)
scalars = st.none() | st.booleans() | st.integers(-5, 5) | st.text(alphabet="xyz", max_size=3)
plain_scalars = st.booleans() | st.integers(-5, 5) | st.text(alphabet="xyz", max_size=3)
# values stored in a document: no nulls anywhere (null deletes; arrays may not hold it)
values = st.recursive(
    plain_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=10,
)
objects = st.dictionaries(keys, values, max_size=4)
# merge patches: objects whose values may be null (delete) or nested patches
patches = st.recursive(
    st.dictionaries(keys, scalars | st.lists(plain_scalars, max_size=2), max_size=3),
    lambda inner: st.dictionaries(keys, inner | scalars, max_size=3),
    max_leaves=10,
)


def update(doc: ShadowDocument, request: dict[str, Any], now: int = 100) -> ShadowDocument:
    return apply_update(doc, parse_update_request(request), now=now).document


# -- properties ------------------------------------------------------------------------
@given(objects, patches)
def test_merge_patch_is_idempotent(target: dict[str, Any], patch: dict[str, Any]) -> None:
    once = merge_patch(target, patch)
    assert merge_patch(once, patch) == once


@given(objects, patches)
def test_merge_patch_never_mutates_its_inputs(target: dict[str, Any], patch: dict[str, Any]) -> None:
    target_copy, patch_copy = copy.deepcopy(target), copy.deepcopy(patch)
    merge_patch(target, patch)
    assert target == target_copy and patch == patch_copy


@given(objects, keys)
def test_null_deletes(target: dict[str, Any], key: str) -> None:
    assert key not in merge_patch(target, {key: None})


@given(objects, keys, st.lists(plain_scalars, max_size=3))
def test_arrays_are_replaced_whole(target: dict[str, Any], key: str, array: list[Any]) -> None:
    assert merge_patch(target, {key: array})[key] == array


@given(objects, objects)
def test_applying_the_delta_to_reported_empties_it(desired: dict[str, Any], reported: dict[str, Any]) -> None:
    delta = compute_delta(desired, reported)
    assert compute_delta(desired, merge_patch(reported, delta)) == {}


@given(objects, objects)
def test_delta_under_apps_removes_what_is_not_desired(desired: dict[str, Any], reported: dict[str, Any]) -> None:
    desired = {**desired, "apps": {"a": "1"}}
    reported = {**reported, "apps": {"a": "0", "b": "1"}}
    after = merge_patch(reported, compute_delta(desired, reported))
    assert after["apps"] == {"a": "1"}


@given(objects, objects)
def test_merge_diff_turns_old_into_new(old: dict[str, Any], new: dict[str, Any]) -> None:
    assert json_equal(merge_patch(old, merge_diff(old, new)), new)


@given(objects)
def test_merge_diff_of_equal_objects_is_empty(value: dict[str, Any]) -> None:
    assert merge_diff(value, copy.deepcopy(value)) == {}


@settings(max_examples=50)
@given(objects, patches, patches)
def test_version_grows_by_one_per_accepted_update(start: dict[str, Any], p1: dict[str, Any], p2: dict[str, Any]) -> None:
    doc = update(ShadowDocument(), {"state": {"reported": start}})
    for patch in (p1, p2):
        before = doc.version
        doc = update(doc, {"state": {"reported": patch}})
        assert doc.version == before + 1


# -- examples --------------------------------------------------------------------------
def test_json_equal_tells_true_from_one() -> None:
    assert not json_equal(True, 1)
    assert not json_equal([True], [1])
    assert json_equal(1, 1.0)
    assert compute_delta({"p": {"x": True}}, {"p": {"x": 1}}) == {"p": {"x": True}}


def test_depth_counts_from_the_section() -> None:
    assert depth(1) == 0
    assert depth({}) == 1
    assert depth({"a": [1, {"b": 2}]}) == 3


def test_metadata_stamps_each_written_leaf_and_forgets_deleted_ones() -> None:
    doc = update(ShadowDocument(), {"state": {"desired": {"apps": {"web": "v1"}, "p": {"a": 1, "b": 2}}}}, now=10)
    assert doc.metadata["desired"] == {
        "apps": {"web": {"timestamp": 10}},
        "p": {"a": {"timestamp": 10}, "b": {"timestamp": 10}},
    }
    doc = update(doc, {"state": {"desired": {"p": {"a": None, "b": 3}}}}, now=20)
    assert doc.metadata["desired"]["p"] == {"b": {"timestamp": 20}}
    assert doc.metadata["desired"]["apps"] == {"web": {"timestamp": 10}}
    assert doc.timestamp == 20


def test_metadata_follows_a_leaf_that_becomes_an_object_and_back() -> None:
    doc = update(ShadowDocument(), {"state": {"reported": {"cfg": "flat"}}}, now=1)
    doc = update(doc, {"state": {"reported": {"cfg": {"a": 1}}}}, now=2)
    assert doc.metadata["reported"] == {"cfg": {"a": {"timestamp": 2}}}
    doc = update(doc, {"state": {"reported": {"cfg": "flat"}}}, now=3)
    assert doc.metadata["reported"] == {"cfg": {"timestamp": 3}}


def test_accepted_delta_and_documents_payloads() -> None:
    doc = update(ShadowDocument(), {"state": {"reported": {"p": {"fan": "off"}}}}, now=1)
    outcome = apply_update(
        doc, parse_update_request({"state": {"desired": {"p": {"fan": "on"}}}, "clientToken": "t1"}), now=5
    )
    assert outcome.accepted_payload() == {
        "state": {"desired": {"p": {"fan": "on"}}},
        "metadata": {"desired": {"p": {"fan": {"timestamp": 5}}}},
        "version": 2,
        "timestamp": 5,
        "clientToken": "t1",
    }
    assert outcome.delta_payload() == {"state": {"p": {"fan": "on"}}, "version": 2, "timestamp": 5}
    documents = outcome.documents_payload()
    assert documents["previous"]["version"] == 1 and documents["current"]["version"] == 2


def test_no_delta_message_when_only_reported_changes() -> None:
    doc = update(ShadowDocument(), {"state": {"desired": {"p": {"fan": "on"}}}})
    outcome = apply_update(doc, parse_update_request({"state": {"reported": {"x": 1}}}), now=2)
    assert outcome.delta_payload() is None


def test_no_delta_message_when_desired_matches_reported() -> None:
    doc = update(ShadowDocument(), {"state": {"reported": {"p": {"fan": "on"}}}})
    outcome = apply_update(doc, parse_update_request({"state": {"desired": {"p": {"fan": "on"}}}}), now=2)
    assert outcome.delta_payload() is None


@pytest.mark.parametrize(
    ("request_body", "writable", "code"),
    [
        ({"state": {"desired": {"a": 1}}}, ("reported",), ErrorCode.FORBIDDEN),
        ({"state": {"reported": {"a": 1}}}, ("desired",), ErrorCode.FORBIDDEN),
        ({"state": {}}, ("reported",), ErrorCode.BAD_REQUEST),
        ({"state": {"reported": {}}, "extra": 1}, ("reported",), ErrorCode.BAD_REQUEST),
        ({"state": {"reported": {}}, "clientToken": 5}, ("reported",), ErrorCode.BAD_REQUEST),
        ({"state": {"reported": {}}, "version": True}, ("reported",), ErrorCode.BAD_REQUEST),
        ({"state": {"reported": {}}, "version": -1}, ("reported",), ErrorCode.BAD_REQUEST),
        ({"state": {"reported": {"l": [[None]]}}}, ("reported",), ErrorCode.BAD_REQUEST),
        ("text", ("reported",), ErrorCode.BAD_REQUEST),
        (None, ("reported",), ErrorCode.BAD_REQUEST),
    ],
)
def test_refused_requests(request_body: Any, writable: tuple[str, ...], code: ErrorCode) -> None:
    with pytest.raises(Rejection) as caught:
        parse_update_request(request_body, writable=writable)
    assert caught.value.code == code
    assert caught.value.message


def test_client_token_counts_bytes_not_characters() -> None:
    with pytest.raises(Rejection):
        parse_update_request({"state": {"reported": {}}, "clientToken": "é" * 33})  # 66 bytes
    assert parse_update_request({"state": {"reported": {}}, "clientToken": "é" * 32}).client_token


def test_limits_are_configurable() -> None:
    small = ShadowLimits(max_state_bytes=100, max_depth=2, max_client_token_bytes=4)
    with pytest.raises(Rejection) as caught:
        parse_update_request({"state": {"reported": {"a": {"b": {"c": 1}}}}}, limits=small)
    assert caught.value.code == ErrorCode.BAD_REQUEST
    request = parse_update_request({"state": {"reported": {"blob": "x" * 200}}}, limits=small)
    with pytest.raises(Rejection) as caught:
        apply_update(ShadowDocument(), request, now=1, limits=small)
    assert caught.value.code == ErrorCode.TOO_LARGE


def test_document_round_trips_through_json() -> None:
    doc = update(ShadowDocument(), {"state": {"desired": {"apps": {"w": "1"}}, "reported": {"x": 1}}})
    assert ShadowDocument.from_json(doc.to_json()) == doc
