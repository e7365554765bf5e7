"""The topic ACL through a real broker: what a node and the cloud may publish and subscribe.

"Cannot publish" is shown by an authorised observer that receives a sentinel published
after the forbidden messages, and nothing else. "Cannot subscribe" is shown by SUBACK
0x80 and by the subscriber receiving nothing when the topic is published.
"""

from __future__ import annotations

import pytest

from tests.broker.clients import Probe
from tests.broker.conftest import CLOUD, NODE_A, NODE_B, ClientFactory, Topics

ALLOWED_SUFFIXES = ["shadow/update", "shadow/get", "status", "resources/get", "functions/app/fn/result",
                    "logs/data", "events"]


def test_a_node_publishes_its_requests(connect: ClientFactory, cloud: Probe, topics: Topics) -> None:
    node = connect(NODE_A)
    for suffix in ALLOWED_SUFFIXES:
        node.publish(topics.a(suffix), suffix.encode())
        assert cloud.expect_topic(topics.a(suffix)).payload == suffix.encode()


def test_a_node_cannot_publish_for_another_node_or_as_the_cloud(
    connect: ClientFactory, cloud: Probe, topics: Topics
) -> None:
    node = connect(NODE_A)
    for topic in [
        topics.b("shadow/update"),
        topics.b("status"),
        topics.a("shadow/update/delta"),
        topics.a("shadow/get/accepted"),
        topics.a("functions/app/fn/invoke"),
        f"{topics.root}/ns1/node-a",
        "elsewhere/topic",
    ]:
        node.publish(topic, b"forged")
    node.publish(topics.a("status"), b"sentinel")
    assert cloud.expect().payload == b"sentinel"
    cloud.expect_nothing()


def test_a_node_subscribes_under_its_own_root(connect: ClientFactory, cloud: Probe, topics: Topics) -> None:
    node = connect(NODE_A)
    assert node.subscribe(f"{topics.root}/ns1/node-a/#").value == 1
    cloud.publish(topics.a("shadow/update/delta"), b"delta")
    assert node.expect_topic(topics.a("shadow/update/delta")).payload == b"delta"


@pytest.mark.parametrize(
    "suffix_filter",
    ["ns1/node-b/#", "#", "ns1/+/shadow/update", "+/+/status", "ns1/node-b/shadow/update/delta"],
)
def test_a_node_cannot_subscribe_beyond_its_root(
    connect: ClientFactory, cloud: Probe, topics: Topics, suffix_filter: str
) -> None:
    node = connect(NODE_A)
    suback = node.subscribe(f"{topics.root}/{suffix_filter}")
    assert suback.value == 0x80
    assert node.subscribe(f"{topics.root}/ns1/node-a/status").value == 1
    cloud.publish(topics.b("shadow/update/delta"))
    cloud.publish(topics.b("status"))
    cloud.publish(topics.a("status"), b"sentinel")
    assert node.expect().payload == b"sentinel"
    node.expect_nothing()


@pytest.mark.parametrize("topic_filter", ["#", "+/#", "$SYS/#"])
def test_nobody_subscribes_to_the_whole_broker(connect: ClientFactory, topic_filter: str) -> None:
    for user in (NODE_A, CLOUD):
        assert connect(user).subscribe(topic_filter).value == 0x80


def test_the_cloud_subscribes_to_every_nodes_updates(connect: ClientFactory, topics: Topics) -> None:
    cloud = connect(CLOUD)
    assert cloud.subscribe(f"{topics.root}/+/+/shadow/update").value == 1
    for user, topic in ((NODE_A, topics.a("shadow/update")), (NODE_B, topics.b("shadow/update"))):
        connect(user).publish(topic, user.encode())
        assert cloud.expect_topic(topic).payload == user.encode()


def test_shared_subscriptions_are_refused_because_amqtt_cannot_deliver_them(
    connect: ClientFactory, topics: Topics
) -> None:
    cloud = connect(CLOUD)
    assert cloud.subscribe(f"$share/tether-cloud/{topics.root}/+/+/shadow/update").value == 0x80


def test_a_node_cannot_read_or_forge_another_nodes_logs_and_events(
    connect: ClientFactory, cloud: Probe, topics: Topics
) -> None:
    """Logs and events travel under the node's own root: node A sees none of B's, and can
    neither answer for B nor ask B (or itself) for logs: requests are the cloud's."""
    a, b = connect(NODE_A), connect(NODE_B)
    for suffix in ("logs/data", "logs/request", "events", "logs/#", "+/data"):
        assert a.subscribe(topics.b(suffix)).value == 0x80
    assert b.subscribe(topics.b("logs/request")).value == 1
    b.publish(topics.b("logs/data"), b"b's log")
    assert cloud.expect_topic(topics.b("logs/data")).payload == b"b's log"
    for topic in (topics.b("logs/data"), topics.b("events"), topics.b("logs/request"),
                  topics.a("logs/request")):
        a.publish(topic, b"forged")
    a.publish(topics.a("events"), b"sentinel")
    assert cloud.expect().payload == b"sentinel"
    cloud.expect_nothing()
    a.expect_nothing()
    b.expect_nothing()  # the forged request never reached b
    cloud.publish(topics.b("logs/request"), b"request")
    assert b.expect_topic(topics.b("logs/request")).payload == b"request"
