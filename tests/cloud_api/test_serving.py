"""The bridge's logic without a broker: ``ShadowServer.handle`` with an in-memory publisher."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cloud_api.errors import Busy
from cloud_api.metrics import BRIDGE_ERRORS, UPDATES_ACCEPTED, UPDATES_REJECTED, Metrics
from cloud_api.mqtt import serving
from cloud_api.mqtt.serving import ShadowServer
from cloud_api.mqtt.transport import MemoryPublisher
from cloud_api.runtime import Cloud
from cloud_api.services.nodes import get_node
from schemas.topics import Suffix
from tests.cloud_api.conftest import Clock

TOKEN = "tok-1"
UNKNOWN_APP = {"kind": "app", "name": "x", "version": "1"}


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'tether.db'}"  # the logic is the same on every store


class Node:
    """Publishes as node ``default/n1`` into the server; reads what the server published."""

    def __init__(self, cloud: Cloud) -> None:
        self.publisher = MemoryPublisher()
        self.metrics = Metrics()
        self.topics = cloud.settings.topics
        self.server = ShadowServer(
            cloud.store,
            self.publisher,
            topics=self.topics,
            limits=cloud.settings.limits,
            metrics=self.metrics,
            clock=cloud.context.clock,
        )

    def topic(self, suffix: Suffix, node: str = "n1") -> str:
        return self.topics.topic("default", node, suffix)

    def send(self, suffix: Suffix, payload: Any, node: str = "n1") -> None:
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.server.handle(self.topic(suffix, node), raw)

    def received(self, suffix: Suffix, node: str = "n1") -> list[Any]:
        return self.publisher.on(self.topic(suffix, node))

    def suffixes(self) -> list[str]:
        return [m.topic.rsplit("/n1/", 1)[1] for m in self.publisher.messages]


@pytest.fixture
def node(cloud: Cloud) -> Node:
    cloud.create_node("n1")
    return Node(cloud)


def test_get_returns_the_full_document_and_echoes_the_token(node: Node) -> None:
    node.send(Suffix.SHADOW_GET, {"clientToken": TOKEN})
    (reply,) = node.received(Suffix.SHADOW_GET_ACCEPTED)
    assert reply["clientToken"] == TOKEN
    assert reply["version"] == 0 and reply["state"] == {"desired": {"apps": {}}, "reported": {}, "delta": {}}


def test_update_publishes_accepted_then_documents(node: Node, clock: Clock) -> None:
    node.send(Suffix.SHADOW_UPDATE, {"state": {"reported": {"temp": 21}}, "clientToken": TOKEN})
    assert node.suffixes() == ["shadow/update/accepted", "shadow/update/documents"]
    (accepted,) = node.received(Suffix.SHADOW_UPDATE_ACCEPTED)
    assert accepted == {
        "state": {"reported": {"temp": 21}},
        "metadata": {"reported": {"temp": {"timestamp": int(clock.now)}}},
        "version": 1,
        "timestamp": int(clock.now),
        "clientToken": TOKEN,
    }
    (documents,) = node.received(Suffix.SHADOW_UPDATE_DOCUMENTS)
    assert documents["previous"]["version"] == 0 and documents["current"]["version"] == 1
    assert node.metrics.value(UPDATES_ACCEPTED, source="mqtt") == 1


@pytest.mark.parametrize(
    ("payload", "code", "echoed"),
    [
        (b"{not json", 400, None),
        (b"\xff\xfe{}", 415, None),
        (b"", 400, None),
        (b"[1, 2]", 400, None),
        (b'{"state": {"reported": {"x": 1e400}}, "clientToken": "t"}', 400, None),
        (b'{"state": {"reported": {"x": "\\ud800"}}}', 400, None),
        ({"state": {"desired": {"fan": "on"}}, "clientToken": TOKEN}, 403, TOKEN),
        ({"state": {"reported": {"a": 1}}, "version": 7, "clientToken": TOKEN}, 409, TOKEN),
        ({"state": {"reported": {"blob": "x" * 300_000}}, "clientToken": TOKEN}, 413, TOKEN),
        (b"x" * 700_000, 413, None),
        ({"state": {"reported": {"a": 1}}, "clientToken": "t" * 65}, 400, None),
        ({"state": {"reported": {"a": 1}}, "clientToken": 5}, 400, None),
    ],
    ids=["bad-json", "not-utf8", "empty", "array", "inf", "surrogate", "desired", "stale",
         "big-state", "big-payload", "long-token", "token-type"],
)
def test_update_rejections(node: Node, payload: Any, code: int, echoed: str | None) -> None:
    node.send(Suffix.SHADOW_UPDATE, payload)
    assert node.suffixes() == ["shadow/update/rejected"]
    (rejected,) = node.received(Suffix.SHADOW_UPDATE_REJECTED)
    assert rejected["code"] == code and rejected["message"]
    assert rejected.get("clientToken") == echoed
    assert isinstance(rejected["timestamp"], int)
    assert node.metrics.value(UPDATES_REJECTED, source="mqtt", code=str(code)) == 1


@pytest.mark.parametrize(
    ("suffix", "payload", "code"),
    [
        (Suffix.SHADOW_GET, {"clientToken": TOKEN, "extra": 1}, 400),
        (Suffix.SHADOW_GET, b"nope", 400),
        (Suffix.RESOURCES_GET, {"clientToken": TOKEN, "items": [UNKNOWN_APP]}, 404),
    ],
)
def test_get_rejections(node: Node, suffix: Suffix, payload: Any, code: int) -> None:
    node.send(suffix, payload)
    reply_topic = Suffix(f"{suffix.value}/rejected")
    (rejected,) = node.received(reply_topic)
    assert rejected["code"] == code
    assert rejected.get("clientToken") == (TOKEN if isinstance(payload, dict) else None)


def test_get_of_an_unknown_node_is_404(node: Node) -> None:
    node.send(Suffix.SHADOW_GET, {"clientToken": TOKEN}, node="ghost")
    (rejected,) = node.received(Suffix.SHADOW_GET_REJECTED, node="ghost")
    assert rejected["code"] == 404 and rejected["clientToken"] == TOKEN


@pytest.mark.parametrize("online", [True, False])
def test_status_sets_online_and_last_seen(
    node: Node, cloud: Cloud, clock: Clock, online: bool
) -> None:
    node.send(Suffix.STATUS, {"online": online, "timestamp": 5})
    with cloud.store.session() as session:
        stored = get_node(session, "default", "n1")
    assert (stored.online, stored.last_seen) == (online, int(clock.now))
    assert node.publisher.messages == []


@pytest.mark.parametrize(
    "payload", [b"garbage", {"online": "yes"}, b"", {"online": True, "timestamp": "x"}]
)
def test_bad_or_empty_status_changes_nothing_and_publishes_nothing(
    node: Node, cloud: Cloud, payload: Any
) -> None:
    node.send(Suffix.STATUS, payload)
    node.send(Suffix.STATUS, {"online": True}, node="ghost")  # unknown node: ignored
    with cloud.store.session() as session:
        assert get_node(session, "default", "n1").online is False
    assert node.publisher.messages == []


@pytest.mark.parametrize(
    "topic",
    [
        "elsewhere/x",
        "{root}/default/n1/shadow/update/accepted",
        "{root}/BAD/n1/shadow/get",
        "{root}/default",
    ],
)
def test_topics_the_cloud_does_not_serve_are_ignored(node: Node, topic: str) -> None:
    node.server.handle(topic.format(root=node.topics.root), b"{}")
    assert node.publisher.messages == []
    assert node.metrics.value(BRIDGE_ERRORS, kind="ignored") == 1


def test_an_internal_failure_is_a_500_rejection_not_an_exception(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(serving, "write_batch", broken)
    node.send(Suffix.SHADOW_GET, {"clientToken": TOKEN})
    (rejected,) = node.received(Suffix.SHADOW_GET_REJECTED)
    assert rejected == {"code": 500, "message": "internal error; retry later", "clientToken": TOKEN,
                        "timestamp": rejected["timestamp"]}


def test_refuse_answers_without_handling(node: Node) -> None:
    busy = Busy("overloaded")
    node.server.refuse(node.topic(Suffix.SHADOW_UPDATE), b'{"clientToken": "t"}', busy)
    node.server.refuse(node.topic(Suffix.STATUS), b"{}", busy)  # status has no reply topic
    assert node.received(Suffix.SHADOW_UPDATE_REJECTED) == [
        {"code": 429, "message": "overloaded", "clientToken": "t", "timestamp": node.server.now()}
    ]
    assert len(node.publisher.messages) == 1


def test_a_bug_in_resources_get_costs_that_request_only(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(serving, "fetch_resources", broken)
    get = {"clientToken": "r1", "items": [UNKNOWN_APP]}
    node.server.handle_batch([
        (node.topic(Suffix.RESOURCES_GET), json.dumps(get).encode()),
        (node.topic(Suffix.SHADOW_GET), json.dumps({"clientToken": TOKEN}).encode()),
    ])
    (rejected,) = node.received(Suffix.RESOURCES_GET_REJECTED)
    assert (rejected["code"], rejected["clientToken"]) == (500, "r1")
    assert node.received(Suffix.SHADOW_GET_ACCEPTED)[0]["clientToken"] == TOKEN
