"""Sessions: persistent sessions with QoS 1, retained messages, and client id ownership."""

from __future__ import annotations

import time

from broker.embedded import EmbeddedBroker
from tests.broker.clients import (
    PUBLISH,
    SUBACK,
    Probe,
    closed_by_peer,
    connect_packet,
    parse_publish,
    puback_packet,
    raw_connect,
    read_packet,
    subscribe_packet,
)
from tests.broker.conftest import CLOUD, NODE_A, NODE_B, PASSWORDS, ClientFactory, Topics


def test_qos1_messages_sent_while_a_persistent_client_was_away_arrive_on_reconnect(
    connect: ClientFactory, topics: Topics
) -> None:
    node = connect(NODE_A, client_id="node-a", clean_session=False)
    assert node.subscribe(topics.a("shadow/update/delta")).value == 1
    node.close()
    cloud = connect(CLOUD)
    sent = [f"delta-{i}".encode() for i in range(3)]
    for payload in sent:
        cloud.publish(topics.a("shadow/update/delta"), payload)
    time.sleep(0.2)  # the broker queues them for the absent session
    back = connect(NODE_A, client_id="node-a", clean_session=False)
    assert back.session_present
    received = [back.expect_topic(topics.a("shadow/update/delta")) for _ in sent]
    assert [m.payload for m in received] == sent
    assert not any(m.retain for m in received)  # queued, not retained
    back.expect_nothing()


def test_a_qos1_message_unacknowledged_at_disconnect_is_sent_again_on_reconnect(
    broker: EmbeddedBroker, connect: ClientFactory, topics: Topics
) -> None:
    login = connect_packet("node-a", NODE_A, PASSWORDS[NODE_A], clean=False)
    sock, code = raw_connect(broker.port, login)
    assert code == 0
    sock.sendall(subscribe_packet(1, topics.a("shadow/update/delta")))
    assert read_packet(sock)[0] == SUBACK
    connect(CLOUD).publish(topics.a("shadow/update/delta"), b"delta-1")
    kind, _, body = read_packet(sock)
    assert kind == PUBLISH
    sock.close()  # gone before its PUBACK

    sock, code = raw_connect(broker.port, login)
    try:
        kind, flags, body = read_packet(sock)
        topic, packet_id, payload = parse_publish(flags, body)
        assert (kind, topic, payload) == (PUBLISH, topics.a("shadow/update/delta"), b"delta-1")
        assert flags & 0x08  # DUP: a redelivery
        assert packet_id is not None
        sock.sendall(puback_packet(packet_id))
    finally:
        sock.close()


def test_retained_status_reaches_later_subscribers_and_an_empty_payload_clears_it(
    connect: ClientFactory, topics: Topics
) -> None:
    connect(NODE_A).publish(topics.a("status"), b'{"online": true}', retain=True)
    first = connect(CLOUD)
    first.subscribe(f"{topics.root}/+/+/status")
    message = first.expect_topic(topics.a("status"))
    assert (message.payload, message.retain) == (b'{"online": true}', True)
    connect(NODE_A).publish(topics.a("status"), b"", retain=True)
    second = connect(CLOUD)
    second.subscribe(f"{topics.root}/+/+/status")
    second.expect_nothing()


def test_a_client_gets_only_the_retained_messages_of_its_own_subscriptions(
    connect: ClientFactory, cloud: Probe, topics: Topics
) -> None:
    # amqtt would send a connecting client the retained messages matching *any* client's
    # subscriptions: here the cloud's "root/#" would hand node-a's status to node-b.
    connect(NODE_A).publish(topics.a("status"), b"a is online", retain=True)
    connect(NODE_B).publish(topics.b("status"), b"b is online", retain=True)
    node_b = connect(NODE_B)
    node_b.expect_nothing()
    node_b.subscribe(f"{topics.root}/ns1/node-b/#")
    assert node_b.expect_topic(topics.b("status")).payload == b"b is online"
    node_b.expect_nothing()


def test_a_refused_client_cannot_disturb_the_session_whose_id_it_uses(
    broker: EmbeddedBroker, connect: ClientFactory, cloud: Probe, topics: Topics
) -> None:
    node = connect(NODE_A, client_id="node-a")
    node.subscribe(topics.a("shadow/update/delta"))
    wrong_password = connect_packet("node-a", NODE_A, "wrong")
    another_node = connect_packet("node-a", NODE_B, PASSWORDS[NODE_B])
    for intruder in (wrong_password, another_node):
        sock, code = raw_connect(broker.port, intruder)
        sock.close()
        assert code in (2, 5)  # identifier rejected (held by another user) / not authorized
    cloud.publish(topics.a("shadow/update/delta"), b"still subscribed")
    assert node.expect_topic(topics.a("shadow/update/delta")).payload == b"still subscribed"


def test_the_same_user_reconnecting_takes_over_and_the_old_connection_is_closed(
    broker: EmbeddedBroker, connect: ClientFactory, cloud: Probe, topics: Topics
) -> None:
    login = connect_packet("node-a", NODE_A, PASSWORDS[NODE_A], will=(topics.a("status"), b"offline"))
    old, code = raw_connect(broker.port, login)
    try:
        assert code == 0
        new = connect(NODE_A, client_id="node-a")
        assert not new.connack.is_failure  # type: ignore[union-attr]
        assert closed_by_peer(old)
        assert cloud.expect_topic(topics.a("status")).payload == b"offline"  # the old one's will
        new.subscribe(topics.a("shadow/update/delta"))
        cloud.publish(topics.a("shadow/update/delta"), b"to the new connection")
        assert new.expect_topic(topics.a("shadow/update/delta")).payload == b"to the new connection"
    finally:
        old.close()


def test_a_retained_request_is_delivered_live_but_not_retained(
    connect: ClientFactory, cloud: Probe, topics: Topics
) -> None:
    connect(NODE_A).publish(topics.a("shadow/update"), b"once", retain=True)
    assert cloud.expect_topic(topics.a("shadow/update")).payload == b"once"
    late = connect(CLOUD)
    late.subscribe(f"{topics.root}/+/+/shadow/update")
    late.expect_nothing()  # not replayed to every new cloud subscription
