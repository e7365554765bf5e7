"""No input on the MQTT port brings the broker down or stops it serving others (DESIGN §6)."""

from __future__ import annotations

import os
import socket
from collections.abc import Awaitable, Callable

import pytest
from amqtt.contexts import Action
from amqtt.session import Session

from broker.embedded import EmbeddedBroker
from tests.broker.clients import (
    CONNECT,
    PUBLISH,
    Probe,
    closed_by_peer,
    connect_packet,
    packet,
    raw_connect,
)
from tests.broker.conftest import CLOUD, NODE_A, PASSWORDS, ClientFactory, Topics

MIB = 1024 * 1024


def _still_serving(connect: ClientFactory, cloud: Probe, topics: Topics) -> None:
    node = connect(NODE_A)
    node.publish(topics.a("status"), b"alive")
    assert cloud.expect_topic(topics.a("status")).payload == b"alive"


def _send(port: int, data: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        sock.sendall(data)
    except OSError:  # the broker may close before it has read everything
        pass
    return sock


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(os.urandom(4096), id="random-bytes"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", id="http-request"),
        pytest.param(packet(PUBLISH, b"\x00\x01t" + b"x" * 10), id="publish-before-connect"),
        pytest.param(packet(CONNECT, b"\x00\x06MQIsdp\x03\x02\x00\x3c\x00\x01c"), id="mqtt-3.1"),
        pytest.param(bytes([CONNECT << 4, 0xFF, 0xFF, 0xFF, 0x7F]) + b"\x00\x04MQTT", id="connect-announcing-256MB"),
        pytest.param(bytes([CONNECT << 4, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]), id="overlong-remaining-length"),
        pytest.param(b"", id="silent"),
    ],
)
def test_bad_bytes_close_that_connection_only(
    broker: EmbeddedBroker, connect: ClientFactory, cloud: Probe, topics: Topics, data: bytes
) -> None:
    sock = _send(broker.port, data)
    try:
        assert closed_by_peer(sock, within=3.0)  # the test broker's CONNECT deadline is 1 s
    finally:
        sock.close()
    _still_serving(connect, cloud, topics)


def test_undecodable_credentials_are_refused(
    broker: EmbeddedBroker, connect: ClientFactory, cloud: Probe, topics: Topics
) -> None:
    sock, code = raw_connect(broker.port, connect_packet("c", b"\xff\xfe/\x00", "pw"))
    sock.close()
    assert code == 5
    _still_serving(connect, cloud, topics)


def test_a_10mb_publish_closes_the_publishers_connection_and_nothing_else(
    broker: EmbeddedBroker, connect: ClientFactory, cloud: Probe, topics: Topics
) -> None:
    assert broker.settings.max_packet_bytes == 8 * MIB
    sock, code = raw_connect(broker.port, connect_packet("big", NODE_A, PASSWORDS[NODE_A]))
    try:
        assert code == 0
        topic = topics.a("status").encode()
        body = len(topic).to_bytes(2, "big") + topic + b"\x00\x01" + b"x" * (10 * MIB)
        try:
            sock.sendall(packet(PUBLISH, body, flags=0x02))
        except OSError:
            pass
        assert closed_by_peer(sock)
    finally:
        sock.close()
    cloud.expect_nothing()
    _still_serving(connect, cloud, topics)


def test_a_2mb_publish_is_delivered(connect: ClientFactory, cloud: Probe, topics: Topics) -> None:
    payload = os.urandom(2 * MIB)
    connect(NODE_A).publish(topics.a("status"), payload)
    assert cloud.expect_topic(topics.a("status")).payload == payload


# amqtt checks each subscriber's right to receive with an await while it walks its table
# of subscriptions, so other clients' SUBSCRIBE, UNSUBSCRIBE and disconnects land in the
# middle of a broadcast. The tests make that change inside the check, where it is certain
# to fall in the walk, and the message must still reach every subscriber.
Check = Callable[[Session, str, Action], Awaitable[bool]]


def _change_during_the_first_check(
    monkeypatch: pytest.MonkeyPatch, broker: EmbeddedBroker, change: Callable[[Session], Awaitable[None]]
) -> None:
    amqtt = broker._broker
    checks: Check = amqtt._topic_filtering
    changed: list[Session] = []

    async def check_after_changing(session: Session, topic: str, action: Action) -> bool:
        if action == Action.RECEIVE and not changed:
            changed.append(session)
            await change(session)
        return await checks(session, topic, action)

    monkeypatch.setattr(amqtt, "_topic_filtering", check_after_changing)


def test_a_subscription_made_during_a_broadcast_loses_no_message(
    monkeypatch: pytest.MonkeyPatch, broker: EmbeddedBroker, connect: ClientFactory,
    cloud: Probe, topics: Topics,
) -> None:
    later = connect(CLOUD)  # on a filter of its own, walked after the cloud's
    assert later.subscribe(topics.a("status")).value == 1

    async def subscribe_elsewhere(session: Session) -> None:
        granted = await broker._broker.add_subscription((topics.b("status"), 1), session)
        assert granted == 1, f"the subscription to node b's status was refused: {granted}"

    _change_during_the_first_check(monkeypatch, broker, subscribe_elsewhere)
    connect(NODE_A).publish(topics.a("status"), b"during a subscribe")
    for name, probe in {"cloud": cloud, "later": later}.items():
        assert probe.expect_topic(topics.a("status")).payload == b"during a subscribe", name


def test_a_subscriber_leaving_during_a_broadcast_skips_no_other(
    monkeypatch: pytest.MonkeyPatch, broker: EmbeddedBroker, connect: ClientFactory,
    cloud: Probe, topics: Topics,
) -> None:
    second = connect(CLOUD)
    assert second.subscribe(f"{topics.root}/#").value == 1
    probes = {"cloud": cloud, "second": second}

    async def unsubscribe_the_one_checked(session: Session) -> None:
        broker._broker._del_subscription(f"{topics.root}/#", session)

    _change_during_the_first_check(monkeypatch, broker, unsubscribe_the_one_checked)
    connect(NODE_A).publish(topics.a("status"), b"during an unsubscribe")
    for name, probe in probes.items():
        assert probe.expect_topic(topics.a("status")).payload == b"during an unsubscribe", name
