"""The wire contract of log streams and events: requests, chunks, bounds, topics, ACL."""

from __future__ import annotations

from typing import Any

import pytest

from schemas.errors import Rejection
from schemas.events import EventKind, parse_event, parse_events
from schemas.logs import (
    MAX_LEASE_SECONDS,
    MAX_LINE_BYTES,
    LogChunk,
    LogRequest,
    chunked,
    cut_line,
    parse_chunk,
    parse_request,
    tail_within,
)
from schemas.topics import Suffix, TopicScheme

T = TopicScheme()


def test_a_request_round_trips() -> None:
    request = LogRequest("s1", "open", "web", "api", 20, True, 15.0)
    assert parse_request(request.wire()) == request
    assert parse_request({"streamId": "s1", "op": "renew"}) == LogRequest("s1", "renew")
    assert parse_request({"streamId": "s", "op": "open", "app": "web", "lease": 999}).lease == MAX_LEASE_SECONDS


@pytest.mark.parametrize(
    "body",
    [[], {"op": "open", "app": "web"}, {"streamId": "", "op": "open"}, {"streamId": "x" * 65, "op": "close"},
     {"streamId": "s", "op": "nope"}, {"streamId": "s", "op": "open", "app": "Web"},
     {"streamId": "s", "op": "open", "app": "web", "tail": 10_001},
     {"streamId": "s", "op": "open", "app": "web", "tail": -1},
     {"streamId": "s", "op": "open", "app": "web", "tail": True},
     {"streamId": "s", "op": "open", "app": "web", "follow": "yes"},
     {"streamId": "s", "op": "open", "app": "web", "lease": 0},
     {"streamId": "s", "op": "open", "app": "web", "service": "a/b"}],
)
def test_bad_requests_are_400(body: Any) -> None:
    with pytest.raises(Rejection) as raised:
        parse_request(body)
    assert raised.value.code == 400


def test_chunks() -> None:
    chunk = LogChunk("s1", 3, ("a", "b"), truncated=True, done=True)
    assert parse_chunk(chunk.wire()) == chunk
    assert parse_chunk({"streamId": "s1", "seq": 0, "error": {"code": 200}}) == LogChunk(
        "s1", 0, error={"code": 502, "message": "the node sent a malformed error"})
    for bad in ([], {"streamId": "s1"}, {"streamId": "s1", "seq": 0, "lines": [1]},
                {"streamId": "s1", "seq": "0"}, {"seq": 0}):
        assert parse_chunk(bad) is None


def test_bounds_of_lines_chunks_and_tails() -> None:
    assert cut_line("é" * MAX_LINE_BYTES).endswith(" [line truncated]")
    assert len(cut_line("é" * MAX_LINE_BYTES).encode()) <= MAX_LINE_BYTES
    assert cut_line("short") == "short"
    assert chunked(["aaaa", "bbbb", "cc"], max_bytes=10) == [["aaaa", "bbbb"], ["cc"]]
    assert chunked(["x" * 20], max_bytes=10) == [["x" * 20]]  # a line is never split
    assert chunked([]) == []
    assert tail_within(["aaa", "bbb", "ccc"], max_bytes=8) == (["bbb", "ccc"], True)
    assert tail_within(["aaa"], max_bytes=8) == (["aaa"], False)


def test_the_topics_and_who_may_publish_them() -> None:
    data = T.topic("ns1", "node-a", Suffix.LOGS_DATA)
    assert data == "tether/v1/ns1/node-a/logs/data"
    assert T.parse(data).suffix == Suffix.LOGS_DATA  # type: ignore[union-attr]
    assert T.parse("tether/v1/ns1/node-a/events").suffix == Suffix.EVENTS  # type: ignore[union-attr]
    assert T.node_may_publish("ns1/node-a", data)
    assert T.node_may_publish("ns1/node-a", "tether/v1/ns1/node-a/events")
    assert not T.node_may_publish("ns1/node-b", data)  # not for another node
    assert not T.node_may_publish("ns1/node-a", "tether/v1/ns1/node-a/logs/request")  # the cloud's
    assert T.node_may_subscribe("ns1/node-a", "tether/v1/ns1/node-a/logs/request")
    assert not T.node_may_subscribe("ns1/node-a", "tether/v1/ns1/node-b/logs/data")


def test_events() -> None:
    body = {"time": 5, "app": "web", "service": "api", "kind": "Crashed", "message": "m" * 2000, "count": 2}
    event = parse_event(body)
    assert event is not None and event.kind is EventKind.CRASHED and len(event.message) == 1024
    assert parse_event({**body, "service": ""}) is not None
    for bad in ({**body, "kind": "Exploded"}, {**body, "count": 0}, {**body, "time": "5"},
                {**body, "app": "Web"}, {**body, "service": "a b"}, "x"):
        assert parse_event(bad) is None
    assert len(parse_events({"events": [body] * 150})) == 100
    assert parse_events({"events": "nope"}) == [] and parse_events([]) == []
