"""Last wills: a node's "offline" status is published (and retained) when it vanishes.

Raw sockets are used so the connection can drop without DISCONNECT, or go silent.
"""

from __future__ import annotations

import time

from broker.embedded import EmbeddedBroker
from tests.broker.clients import Probe, closed_by_peer, connect_packet, raw_connect
from tests.broker.conftest import CLOUD, NODE_A, PASSWORDS, ClientFactory, Topics

OFFLINE = b'{"online": false}'


def test_the_will_on_its_own_status_is_delivered_and_retained(
    broker: EmbeddedBroker, connect: ClientFactory, cloud: Probe, topics: Topics
) -> None:
    packet = connect_packet("a", NODE_A, PASSWORDS[NODE_A], will=(topics.a("status"), OFFLINE))
    sock, code = raw_connect(broker.port, packet)
    assert code == 0
    sock.close()  # no DISCONNECT: the will fires
    assert cloud.expect_topic(topics.a("status")).payload == OFFLINE
    late = connect(CLOUD)
    late.subscribe(topics.a("status"))
    message = late.expect_topic(topics.a("status"))
    assert (message.payload, message.retain) == (OFFLINE, True)


def test_a_will_on_another_nodes_topic_is_refused_at_connect(
    broker: EmbeddedBroker, connect: ClientFactory, cloud: Probe, topics: Topics
) -> None:
    packet = connect_packet("a", NODE_A, PASSWORDS[NODE_A], will=(topics.b("status"), OFFLINE))
    sock, code = raw_connect(broker.port, packet)
    assert code == 5  # not authorized
    sock.close()
    cloud.expect_nothing()
    late = connect(CLOUD)
    late.subscribe(topics.b("status"))
    late.expect_nothing()  # and nothing was retained


def test_a_silent_client_is_dropped_after_one_and_a_half_keepalives_and_its_will_sent(
    broker: EmbeddedBroker, cloud: Probe, topics: Topics
) -> None:
    packet = connect_packet("a", NODE_A, PASSWORDS[NODE_A], will=(topics.a("status"), OFFLINE), keepalive=1)
    sock, code = raw_connect(broker.port, packet)
    started = time.monotonic()
    try:
        assert code == 0
        assert cloud.expect_topic(topics.a("status")).payload == OFFLINE
        assert time.monotonic() - started >= 1.4  # not before 1.5 keep-alives (rounded up: 2 s)
        assert closed_by_peer(sock, within=1.0)
    finally:
        sock.close()


def test_a_clean_disconnect_sends_no_will(broker: EmbeddedBroker, cloud: Probe, topics: Topics) -> None:
    node = Probe(broker.port, NODE_A, PASSWORDS[NODE_A])
    node.client.will_set(topics.a("status"), OFFLINE, qos=1, retain=True)
    try:
        node.connect()
        node.publish(topics.a("status"), b"online")
        assert cloud.expect_topic(topics.a("status")).payload == b"online"
    finally:
        node.close()
    cloud.expect_nothing()
