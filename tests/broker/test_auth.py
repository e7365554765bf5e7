"""Who gets in: the authenticator decides, nothing it does can bring the broker down."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest

from broker.access import password_table
from broker.embedded import run_in_thread
from broker.settings import BrokerSettings
from tests.broker.clients import WAIT, Probe, connect_packet
from tests.broker.conftest import CLOUD, NODE_A, NODE_B, PASSWORDS, ClientFactory, Topics


def test_right_password_connects(connect: ClientFactory) -> None:
    assert not connect(NODE_A).connack.is_failure  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("username", "password"),
    [
        (NODE_A, "wrong"),
        (None, None),  # anonymous
        (NODE_A, ""),  # username, empty password
        ("", "pw-a"),  # empty username
        ("admin", "pw-a"),  # neither the cloud nor a node identity
    ],
)
def test_bad_credentials_are_refused_and_the_broker_serves_on(
    connect: ClientFactory, cloud: Probe, topics: Topics, username: str | None, password: str | None
) -> None:
    refused = connect(username, password)
    assert refused.connack is not None and refused.connack.is_failure
    assert str(refused.connack) == "Not authorized"
    node = connect(NODE_A)
    node.publish(topics.a("status"))
    cloud.expect_topic(topics.a("status"))


def _run_with(authenticate: object, settings: BrokerSettings, topics: Topics) -> tuple[Probe, Probe]:
    """Connect once with a good-looking password through ``authenticate``; then check
    that a second broker-level client still gets a CONNACK (the broker is alive)."""
    with run_in_thread(settings, authenticate) as running:  # type: ignore[arg-type]
        first = Probe(running.port, NODE_A, "anything")
        second = Probe(running.port, NODE_A, "anything")
        try:
            first.connect()
            second.connect()
        finally:
            first.close()
            second.close()
    return first, second


def test_an_authenticator_that_raises_refuses_and_the_broker_serves_on(
    settings: BrokerSettings, topics: Topics
) -> None:
    def broken(username: str | None, password: str | None) -> bool:
        raise RuntimeError("the user database is on fire")

    first, second = _run_with(broken, settings, topics)
    assert first.connack is not None and first.connack.is_failure
    assert second.connack is not None and second.connack.is_failure


def test_an_async_authenticator_is_awaited(settings: BrokerSettings, topics: Topics) -> None:
    seen: list[tuple[str | None, str | None]] = []

    async def remote(username: str | None, password: str | None) -> bool:
        await asyncio.sleep(0.01)
        seen.append((username, password))
        return True

    first, _ = _run_with(remote, settings, topics)
    assert first.connack is not None and not first.connack.is_failure
    assert seen[0] == (NODE_A, "anything")


def test_an_authenticator_answering_truthy_non_bool_is_not_trusted(
    settings: BrokerSettings, topics: Topics
) -> None:
    first, _ = _run_with(lambda username, password: "yes", settings, topics)
    assert first.connack is not None and first.connack.is_failure


def test_two_brokers_in_one_process_keep_their_own_authenticators(
    settings: BrokerSettings, topics: Topics
) -> None:
    with (
        run_in_thread(settings, lambda u, p: p == "one") as first,
        run_in_thread(settings, lambda u, p: p == "two") as second,
    ):
        probes = [Probe(b.port, NODE_A, pw) for b in (first, second) for pw in ("one", "two")]
        try:
            codes = [p.connect().is_failure for p in probes]
        finally:
            for p in probes:
                p.close()
    assert codes == [False, True, True, False]


def test_a_slow_authenticator_does_not_stall_other_clients(
    settings: BrokerSettings, topics: Topics
) -> None:
    table = password_table(PASSWORDS)
    release = threading.Event()

    def slow_for_node_b(username: str | None, password: str | None) -> bool:
        if username == NODE_B:
            release.wait(2 * WAIT)  # a slow database
        return table(username, password)

    with run_in_thread(settings, slow_for_node_b) as running:
        slow = socket.create_connection(("127.0.0.1", running.port))
        slow.sendall(connect_packet("b", NODE_B, PASSWORDS[NODE_B]))
        cloud = Probe(running.port, CLOUD, PASSWORDS[CLOUD])
        node = Probe(running.port, NODE_A, PASSWORDS[NODE_A])
        started = time.monotonic()
        try:
            cloud.connect()
            cloud.subscribe(topics.a("status"))
            node.connect()
            node.publish(topics.a("status"), b"not stalled")
            assert cloud.expect(timeout=1.0).payload == b"not stalled"
            assert time.monotonic() - started < 2.0
        finally:
            release.set()
            cloud.close()
            node.close()
            slow.close()
