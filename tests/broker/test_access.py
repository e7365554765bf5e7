"""The broker's access decisions, without a broker."""

from __future__ import annotations

import pytest

from broker.access import TopicAccess, password_table
from schemas.topics import TopicScheme

R = "tether/v1"
ACCESS = TopicAccess(TopicScheme(R), "tether-cloud")
A, CLOUD = "ns1/node-a", "tether-cloud"


@pytest.mark.parametrize(
    ("username", "topic", "allowed"),
    [
        (A, f"{R}/ns1/node-a/shadow/update", True),
        (A, f"{R}/ns1/node-a/shadow/get", True),
        (A, f"{R}/ns1/node-a/status", True),
        (A, f"{R}/ns1/node-a/resources/get", True),
        (A, f"{R}/ns1/node-a/functions/app/fn/result", True),
        (A, f"{R}/ns1/node-a/shadow/update/delta", False),
        (A, f"{R}/ns1/node-a/functions/app/fn/invoke", False),
        (A, f"{R}/ns1/node-b/shadow/update", False),
        (A, "elsewhere/ns1/node-a/shadow/update", False),
        (CLOUD, f"{R}/ns1/node-a/shadow/update/delta", True),
        (CLOUD, f"{R}/anything/at/all", True),
        (CLOUD, "elsewhere/x", False),
        (CLOUD, f"{R}/ns1/+/status", False),
        (CLOUD, R, False),
        (None, f"{R}/ns1/node-a/status", False),
        ("someone", f"{R}/ns1/node-a/status", False),
        ("", f"{R}/ns1/node-a/status", False),
    ],
)
def test_publish(username: str | None, topic: str, allowed: bool) -> None:
    assert ACCESS.may_publish(username, topic) is allowed


@pytest.mark.parametrize(
    ("username", "topic_filter", "allowed"),
    [
        (A, f"{R}/ns1/node-a/#", True),
        (A, f"{R}/ns1/node-a/shadow/+/accepted", True),
        (A, f"{R}/ns1/node-b/#", False),
        (A, f"{R}/#", False),
        (A, f"{R}/ns1/+/shadow/update", False),
        (A, "#", False),
        (A, f"$share/g/{R}/ns1/node-a/#", False),
        (CLOUD, f"{R}/+/+/shadow/update", True),
        (CLOUD, f"{R}/#", True),
        (CLOUD, f"$share/tether-cloud/{R}/+/+/shadow/update", True),
        (CLOUD, f"$share//{R}/#", False),
        (CLOUD, f"$share/g+/{R}/#", False),
        (CLOUD, f"{R}/a#", False),
        (CLOUD, f"{R}/#/x", False),
        (CLOUD, "#", False),
        (CLOUD, "+/v1/#", False),
        (CLOUD, "$SYS/#", False),
        (None, f"{R}/#", False),
    ],
)
def test_subscribe(username: str | None, topic_filter: str, allowed: bool) -> None:
    assert ACCESS.may_subscribe(username, topic_filter) is allowed


def test_receive_follows_the_subscribe_rule_for_concrete_topics() -> None:
    assert ACCESS.may_receive(A, f"{R}/ns1/node-a/shadow/update/delta")
    assert not ACCESS.may_receive(A, f"{R}/ns1/node-b/shadow/update/delta")
    assert ACCESS.may_receive(CLOUD, f"{R}/ns1/node-b/status")
    assert not ACCESS.may_receive("intruder", f"{R}/ns1/node-b/status")


def test_a_will_may_only_go_where_its_owner_may_publish() -> None:
    assert ACCESS.may_set_will(A, f"{R}/ns1/node-a/status")
    assert not ACCESS.may_set_will(A, f"{R}/ns1/node-b/status")
    assert not ACCESS.may_set_will(A, None)


@pytest.mark.parametrize("cloud", ["", "ns/node"])
def test_the_cloud_identity_must_not_be_a_node(cloud: str) -> None:
    with pytest.raises(ValueError):
        TopicAccess(TopicScheme(R), cloud)


def test_password_table() -> None:
    check = password_table({A: "secret"})
    assert check(A, "secret") is True
    assert check(A, "wrong") is False
    assert check(A, "") is False
    assert check(None, "secret") is False
    assert check("é", "é") is False


@pytest.mark.parametrize(
    ("username", "topic", "allowed"),
    [
        (A, f"{R}/ns1/node-a/status", True),
        (A, f"{R}/ns1/node-a/shadow/update", False),
        (A, f"{R}/ns1/node-b/status", False),
        (CLOUD, f"{R}/ns1/node-a/shadow/update/delta", True),
        (CLOUD, "elsewhere/x", False),
    ],
)
def test_only_status_is_retained_for_nodes(username: str, topic: str, allowed: bool) -> None:
    assert ACCESS.may_retain(username, topic) is allowed
