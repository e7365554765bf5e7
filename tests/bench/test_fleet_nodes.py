"""A simulated node follows the agent's rules message for message (no broker: a recording
link and a hand-moved clock)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from launcher.fleet.catalog import AppCatalog
from launcher.fleet.nodes import SimNode
from launcher.fleet.shared import FleetStats

ROOT = "tether/v1/ns/n1"
APP = {"name": "web", "selector": "", "services": [{"name": "main", "command": ["sleep", "1"],
                                                    "replicas": 2}]}


class Link:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any], bool]] = []

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        self.sent.append((topic.removeprefix(ROOT + "/"), json.loads(payload), retain))

    def take(self) -> list[tuple[str, dict[str, Any], bool]]:
        sent, self.sent = self.sent, []
        return sent


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def node(clock: Clock) -> SimNode:
    return SimNode("n1", root=ROOT, facts={"os": "linux"}, nodestats={"cpu": 1.0},
                   stats=FleetStats(), catalog=AppCatalog(), clock=clock)


def deliver(node: SimNode, suffix: str, body: dict[str, Any]) -> None:
    node.handle(f"{ROOT}/{suffix}", json.dumps(body).encode())


def document(version: int, *, desired: dict[str, Any] | None = None,
             reported: dict[str, Any] | None = None, token: str | None = None) -> dict[str, Any]:
    body = {"state": {"desired": desired or {"apps": {}}, "reported": reported or {}},
            "version": version, "metadata": {}, "timestamp": 1}
    return body | ({"clientToken": token} if token else {})


def synced(node: SimNode, link: Link, *, version: int = 1) -> dict[str, Any]:
    """Connect, answer the get, acknowledge the first report; returns that report."""
    node.connected(link)
    (_, get, _), = [m for m in link.take() if m[0] == "shadow/get"]
    deliver(node, "shadow/get/accepted", document(version, token=get["clientToken"]))
    (suffix, update, _), = link.take()
    assert suffix == "shadow/update"
    deliver(node, "shadow/update/accepted", {"state": update["state"], "version": version + 1,
                                             "clientToken": update["clientToken"]})
    return update


def test_connect_status_get_then_the_full_report(node: SimNode) -> None:
    link = Link()
    node.connected(link)
    (status, body, retained), (suffix, get, _) = link.take()
    assert (status, retained, body["online"]) == ("status", True, True)
    assert suffix == "shadow/get" and set(get) == {"clientToken"}
    deliver(node, "shadow/get/accepted", document(3, token=get["clientToken"]))
    ((suffix, update, _),) = link.take()
    reported = update["state"]["reported"]
    assert suffix == "shadow/update"
    assert reported == {"node": {"os": "linux", "hostname": "n1"}, "nodestats": {"cpu": 1.0},
                        "apps": {}, "appstats": {}}
    assert "reported" not in node.marks
    deliver(node, "shadow/update/accepted", {"state": update["state"], "version": 4,
                                             "clientToken": update["clientToken"]})
    assert "reported" in node.marks and node.version == 4 and link.take() == []


def test_a_delta_is_fetched_reported_pending_then_running(node: SimNode) -> None:
    link = Link()
    synced(node, link)
    deliver(node, "shadow/update/delta", {"state": {"apps": {"web": "1"}}, "version": 3})
    (fetch_topic, fetch, _), (update_topic, pending, _) = link.take()
    assert fetch_topic == "resources/get"
    assert fetch["items"] == [{"kind": "app", "name": "web", "version": "1"}]
    assert update_topic == "shadow/update"
    assert pending["state"]["reported"]["appstats"]["web"]["status"] == "Pending"
    deliver(node, "resources/get/accepted", {"clientToken": fetch["clientToken"], "items": [
        {"kind": "app", "name": "web", "version": "1", "value": APP}]})
    assert link.take() == []  # one update in flight: the Running one waits for its answer
    deliver(node, "shadow/update/accepted", {"state": pending["state"], "version": 4,
                                             "clientToken": pending["clientToken"]})
    ((_, running, _),) = link.take()
    patch = running["state"]["reported"]
    assert patch["apps"] == {"web": "1"}
    assert patch["appstats"]["web"]["status"] == "Running"
    assert [i["name"] for i in patch["appstats"]["web"]["instances"]] == ["main-0", "main-1"]
    assert "running:web@1" not in node.marks
    deliver(node, "shadow/update/accepted", {"state": running["state"], "version": 5,
                                             "clientToken": running["clientToken"]})
    assert {"desired:web@1", "fetched:web@1", "running:web@1"} <= set(node.marks)


def test_stale_deltas_are_dropped_and_a_skipped_version_refetches(node: SimNode) -> None:
    link = Link()
    synced(node, link)  # version 2
    deliver(node, "shadow/update/delta", {"state": {"apps": {"web": "1"}}, "version": 2})
    assert link.take() == []
    deliver(node, "shadow/update/delta", {"state": {"apps": {"web": "1"}}, "version": 5})
    assert [topic for topic, _, _ in link.take()] == ["resources/get", "shadow/update", "shadow/get"]


def test_desired_changed_by_an_update_of_someone_else(node: SimNode) -> None:
    link = Link()
    synced(node, link)
    deliver(node, "shadow/update/accepted", {"state": {"desired": {"apps": {"web": "1"}}},
                                             "version": 3})
    assert [topic for topic, _, _ in link.take()] == ["resources/get", "shadow/update"]


def test_an_unanswered_get_is_asked_again_doubling(node: SimNode, clock: Clock) -> None:
    link = Link()
    node.connected(link)
    link.take()
    asked = []
    for _ in range(40):
        clock.now += 0.25
        node.tick(clock.now)
        asked += [clock.now - 100 for topic, _, _ in link.take() if topic == "shadow/get"]
    assert asked == [2.0, 6.0]  # after 2 s, then 4 s more (8 s next)
    assert node._stats.resent["shadow/get"] == 2


def test_an_unanswered_update_is_given_up_and_the_document_fetched(
    node: SimNode, clock: Clock,
) -> None:
    link = Link()
    node.connected(link)
    (_, get, _) = link.take()[1]
    deliver(node, "shadow/get/accepted", document(1, token=get["clientToken"]))
    link.take()
    clock.now += 2.0
    node.tick(clock.now)
    assert [topic for topic, _, _ in link.take()] == ["shadow/get"]
    assert node._stats.resent["shadow/update"] == 1


@pytest.mark.parametrize(("code", "then"), [(409, "shadow/get"), (429, "shadow/update")])
def test_rejected_updates(node: SimNode, clock: Clock, code: int, then: str) -> None:
    link = Link()
    node.connected(link)
    (_, get, _) = link.take()[1]
    deliver(node, "shadow/get/accepted", document(1, token=get["clientToken"]))
    ((_, update, _),) = link.take()
    deliver(node, "shadow/update/rejected", {"code": code, "message": "no",
                                             "clientToken": update["clientToken"]})
    clock.now += 1.0  # RETRY_SECONDS for 429
    node.tick(clock.now)
    assert [topic for topic, _, _ in link.take()] == [then]
    assert node._stats.rejected[f"shadow/update {code}"] == 1


def test_a_refused_fetch_fails_the_app_and_is_asked_again_after_the_backoff(
    node: SimNode, clock: Clock,
) -> None:
    link = Link()
    synced(node, link)
    deliver(node, "shadow/update/delta", {"state": {"apps": {"web": "1"}}, "version": 3})
    (_, fetch, _), (_, pending, _) = link.take()
    deliver(node, "shadow/update/accepted", {"state": pending["state"], "version": 4,
                                             "clientToken": pending["clientToken"]})
    deliver(node, "resources/get/rejected", {"code": 429, "message": "busy",
                                             "clientToken": fetch["clientToken"]})
    ((_, failed, _),) = link.take()
    assert failed["state"]["reported"]["appstats"]["web"]["status"] == "Failed"
    deliver(node, "shadow/update/accepted", {"state": failed["state"], "version": 5,
                                             "clientToken": failed["clientToken"]})
    clock.now += 9.9
    node.tick(clock.now)
    assert link.take() == []
    clock.now += 0.2  # 10 s: the engine's period is the base of its backoff
    node.tick(clock.now)
    assert [topic for topic, _, _ in link.take()] == ["resources/get"]


def test_set_property_resolves_with_the_time_to_accepted(node: SimNode, clock: Clock) -> None:
    async def scenario() -> float | None:
        link = Link()
        synced(node, link)
        waiter = node.set_property("seq", 7)
        ((_, update, _),) = link.take()
        assert update["state"]["reported"] == {"properties": {"seq": 7}}
        clock.now += 0.003
        deliver(node, "shadow/update/accepted", {"state": update["state"], "version": 3,
                                                 "clientToken": update["clientToken"]})
        return await waiter

    assert asyncio.run(scenario()) == pytest.approx(0.003)


def test_a_lost_connection_forgets_requests_and_reconnect_refetches(node: SimNode) -> None:
    link = Link()
    synced(node, link)
    node.disconnected()
    node.tick(1e9)
    assert link.take() == []
    again = Link()
    node.connected(again)
    assert [topic for topic, _, _ in again.take()] == ["status", "shadow/get"]
