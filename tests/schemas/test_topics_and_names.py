"""Topic building/parsing, the node access rule, names, payload decoding."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.errors import ErrorCode, Rejection
from schemas.messages import parse_get_request, parse_status
from schemas.names import is_valid_name, node_identity, parse_node_identity, validate_name
from schemas.payloads import decode_json, encode_json
from schemas.topics import NodeTopic, Suffix, TopicScheme

T = TopicScheme()


@pytest.mark.parametrize("name", ["a", "web-1", "0", "a" * 63, "x-y-z9"])
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize("name", ["", "A", "-a", "a-", "a" * 64, "a/b", "a+", "#", "a\x00", "a.b", "é", 5, None])
def test_invalid_names_are_refused_with_400(name: object) -> None:
    with pytest.raises(Rejection) as caught:
        validate_name(name, kind="node name")
    assert caught.value.code == ErrorCode.BAD_REQUEST
    assert "node name" in caught.value.message


@given(st.text(max_size=70))
def test_a_valid_name_never_holds_topic_syntax(text: str) -> None:
    if is_valid_name(text):
        assert not set(text) & set("+#/\x00$")


def test_identity_round_trip() -> None:
    assert node_identity("ns", "n1") == "ns/n1"
    assert parse_node_identity("ns/n1") == ("ns", "n1")
    for bad in (None, "", "ns", "ns/n1/x", "NS/n1", "tether-cloud"):
        assert parse_node_identity(bad) is None


def test_topics_build_and_parse() -> None:
    topic = T.topic("default", "n1", Suffix.SHADOW_UPDATE_DELTA)
    assert topic == "tether/v1/default/n1/shadow/update/delta"
    assert T.parse(topic) == NodeTopic("default", "n1", Suffix.SHADOW_UPDATE_DELTA)
    fn = T.function_topic("default", "n1", "app", "fn", result=True)
    assert T.parse(fn) == NodeTopic("default", "n1", Suffix.FUNCTION_RESULT, "app", "fn")


@pytest.mark.parametrize(
    "topic",
    [
        "other/v1/default/n1/shadow/get",
        "tether/v1/default/n1/shadow/nope",
        "tether/v1/default/N1/shadow/get",
        "tether/v1/default/n1",
        "tether/v1/default/n1/functions/invoke",
        "tether/v1/default/n1/functions/a/b/c",
        "tether/v1/default/n1/functions/a/+/invoke",
    ],
)
def test_foreign_topics_do_not_parse(topic: str) -> None:
    assert T.parse(topic) is None


def test_building_refuses_invalid_names() -> None:
    with pytest.raises(Rejection):
        T.topic("default", "n/+", Suffix.SHADOW_GET)


def test_root_must_not_hold_wildcards() -> None:
    with pytest.raises(ValueError):
        TopicScheme(root="tether/+")


def test_cloud_filters_and_shared_subscriptions() -> None:
    assert "tether/v1/+/+/shadow/update" in T.cloud_filters()
    assert all(f.startswith("$share/g1/tether/v1/+/+/") for f in T.cloud_filters(share_group="g1"))


@pytest.mark.parametrize(
    ("topic", "allowed"),
    [
        ("tether/v1/ns/a/shadow/get", True),
        ("tether/v1/ns/a/shadow/update", True),
        ("tether/v1/ns/a/resources/get", True),
        ("tether/v1/ns/a/status", True),
        ("tether/v1/ns/a/functions/app/fn/result", True),
        ("tether/v1/ns/a/functions/app/fn/invoke", False),
        ("tether/v1/ns/a/shadow/update/delta", False),
        ("tether/v1/ns/a/shadow/get/accepted", False),
        ("tether/v1/ns/b/shadow/update", False),
        ("tether/v1/other/a/shadow/update", False),
        ("elsewhere", False),
    ],
)
def test_node_publish_rule(topic: str, allowed: bool) -> None:
    assert T.node_may_publish("ns/a", topic) is allowed


@pytest.mark.parametrize(
    ("topic_filter", "allowed"),
    [
        ("tether/v1/ns/a/#", True),
        ("tether/v1/ns/a/shadow/update/delta", True),
        ("tether/v1/ns/a/resources/get/+", True),
        ("tether/v1/ns/a/+/update/#", True),
        ("tether/v1/ns/a/sh#", False),
        ("tether/v1/ns/a/#/x", False),
        ("tether/v1/ns/a/s+", False),
        ("tether/v1/ns/b/#", False),
        ("tether/v1/ns/+/shadow/update", False),
        ("tether/v1/#", False),
        ("#", False),
        ("$share/g/tether/v1/ns/a/#", False),
        ("tether/v1/ns/a", False),
    ],
)
def test_node_subscribe_rule(topic_filter: str, allowed: bool) -> None:
    assert T.node_may_subscribe("ns/a", topic_filter) is allowed


def test_non_node_identities_get_nothing() -> None:
    for who in (None, "", "tether-cloud", "ns/a/b"):
        assert not T.node_may_publish(who, "tether/v1/ns/a/shadow/get")
        assert not T.node_may_subscribe(who, "tether/v1/ns/a/#")


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"\xff\xfe", ErrorCode.UNSUPPORTED_ENCODING),
        (b"{nope", ErrorCode.BAD_REQUEST),
        (b"", ErrorCode.BAD_REQUEST),
        (b"NaN", ErrorCode.BAD_REQUEST),
        (b"[1e400]", ErrorCode.BAD_REQUEST),
        (b'{"a": -1e999}', ErrorCode.BAD_REQUEST),
        (b'{"a": "\\ud800"}', ErrorCode.BAD_REQUEST),
        (b"[" * 100_000 + b"]" * 100_000, ErrorCode.BAD_REQUEST),
        (b"x" * 2000, ErrorCode.TOO_LARGE),
    ],
)
def test_decode_refuses_bad_payloads(raw: bytes, code: ErrorCode) -> None:
    with pytest.raises(Rejection) as caught:
        decode_json(raw, max_bytes=1000 if code == ErrorCode.TOO_LARGE else 10**7)
    assert caught.value.code == code


@given(st.binary(max_size=200))
def test_decode_only_ever_raises_rejections(raw: bytes) -> None:
    try:
        decode_json(raw, max_bytes=100)
    except Rejection:
        pass


def test_paired_surrogate_escapes_are_fine() -> None:
    assert decode_json(b'{"a": "\\ud83d\\ude00"}', max_bytes=100) == {"a": "\U0001f600"}


@given(st.binary(max_size=200))
def test_whatever_decodes_can_be_encoded_again(raw: bytes) -> None:
    try:
        value = decode_json(raw, max_bytes=1000)
    except Rejection:
        return
    encode_json(value)


def test_encode_is_compact_utf8() -> None:
    assert encode_json({"a": "é"}) == '{"a":"é"}'.encode()


def test_status_and_get_payloads() -> None:
    assert parse_status({"online": False, "timestamp": 3}) == {"online": False, "timestamp": 3}
    assert parse_get_request({}) is None
    assert parse_get_request({"clientToken": "x"}) == "x"
    for bad in ({"online": "yes"}, [], {"online": True, "timestamp": "now"}):
        with pytest.raises(Rejection):
            parse_status(bad)
    with pytest.raises(Rejection):
        parse_get_request({"clientToken": "x", "other": 1})
