"""Starting, stopping and configuring the embedded broker."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

import broker.embedded
from broker.access import password_table
from broker.embedded import EmbeddedBroker, run_in_thread
from broker.errors import BrokerError, BrokerStartError, BrokerStateError, PortInUse
from broker.hardening import TetherBroker
from broker.settings import BrokerSettings
from tests.broker.clients import Probe
from tests.broker.conftest import NODE_A, PASSWORDS

AUTH = password_table(PASSWORDS)


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_port_zero_binds_a_real_port_and_reports_it(settings: BrokerSettings) -> None:
    with run_in_thread(settings, AUTH) as running:
        assert running.port > 0
        assert running.url == f"mqtt://127.0.0.1:{running.port}"
        probe = Probe(running.port, NODE_A, PASSWORDS[NODE_A])
        try:
            assert not probe.connect().is_failure
        finally:
            probe.close()


def test_a_port_in_use_is_one_clear_error(settings: BrokerSettings, taken_port: int) -> None:
    taken = settings.model_copy(update={"port": taken_port})
    with pytest.raises(PortInUse) as caught, run_in_thread(taken, AUTH):
        pass
    assert str(caught.value) == (
        f"port {taken_port} on 127.0.0.1 is in use: stop the other broker or pass --mqtt-port"
    )
    assert isinstance(caught.value, BrokerError)


def test_a_port_taken_between_the_check_and_the_bind_is_still_port_in_use(
    settings: BrokerSettings, taken_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(broker.embedded, "_check_port_free", lambda host, port: None)
    taken = settings.model_copy(update={"port": taken_port})
    with pytest.raises(PortInUse) as caught, run_in_thread(taken, AUTH):
        pass
    assert caught.value.__cause__ is not None  # amqtt's error stays on the chain


def test_a_second_broker_on_the_same_port_is_refused(settings: BrokerSettings) -> None:
    with run_in_thread(settings, AUTH) as first:
        same_port = settings.model_copy(update={"port": first.port})
        with pytest.raises(PortInUse), run_in_thread(same_port, AUTH):
            pass


def test_an_unresolvable_host_is_a_start_error(settings: BrokerSettings) -> None:
    bad = settings.model_copy(update={"host": "no-such-host.invalid", "port": 1883})
    with pytest.raises(BrokerStartError), run_in_thread(bad, AUTH):
        pass


def test_lifecycle_in_an_event_loop(settings: BrokerSettings) -> None:
    async def scenario() -> None:
        embedded = EmbeddedBroker(settings, authenticate=AUTH)
        with pytest.raises(BrokerStateError):
            _ = embedded.port
        async with embedded:
            assert embedded.started
            with pytest.raises(BrokerStateError):
                await embedded.start()
            _, writer = await asyncio.open_connection("127.0.0.1", embedded.port)
            writer.close()
            await writer.wait_closed()
        assert not embedded.started
        await embedded.stop()  # twice is fine

    asyncio.run(scenario())


def _stops_in_time_and_frees_its_port(
    settings: BrokerSettings, monkeypatch: pytest.MonkeyPatch, cleanup: Any, *, within: float
) -> None:
    """With amqtt's session clean-up replaced by ``cleanup``, a broker holding one session
    stops within ``within`` seconds (grace 0.5 s), and the next one binds the same port."""
    monkeypatch.setattr(TetherBroker, "_cleanup_session", cleanup)
    with run_in_thread(settings, AUTH) as running:
        running.shutdown_grace_seconds = 0.5
        port = running.port
        probe = Probe(port, NODE_A, PASSWORDS[NODE_A])
        probe.connect()  # a session for the shutdown to hang on
        started = time.monotonic()
    assert time.monotonic() - started < within
    monkeypatch.undo()
    try:
        with run_in_thread(settings.model_copy(update={"port": port}), AUTH) as again:
            assert again.port == port
    finally:
        probe.close()


def test_a_shutdown_that_hangs_still_stops_the_broker_and_frees_its_port(
    settings: BrokerSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """amqtt's shutdown once did not return (CI): the broker must stop anyway, dropping its
    connections, so that the next broker in the process can start on the same port."""
    async def never(_broker: object, _client_id: str) -> None:
        await asyncio.Event().wait()

    _stops_in_time_and_frees_its_port(settings, monkeypatch, never, within=3)


def test_a_shutdown_that_ignores_its_cancellation_still_ends_the_stop(
    settings: BrokerSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Worse than hanging: a shutdown that swallows the cancellation sent after the grace.
    The stop waits for it one more grace at most, so Ctrl-C and the next broker still work."""
    async def stubborn(_broker: object, _client_id: str) -> None:
        while True:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                continue

    _stops_in_time_and_frees_its_port(settings, monkeypatch, stubborn, within=4)


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TETHER_BROKER_PORT", "1999")
    monkeypatch.setenv("TETHER_BROKER_TOPIC_ROOT", "acme/v1")
    monkeypatch.setenv("TETHER_BROKER_AUTH_URL", "http://cloud/v1/broker/authenticate")
    monkeypatch.setenv("TETHER_BROKER_AUTH_TOKEN", "t0k")
    loaded = BrokerSettings()
    assert (loaded.port, loaded.topic_root, loaded.auth_token) == (1999, "acme/v1", "t0k")
    assert loaded.cloud_username == "tether-cloud" and loaded.host == "127.0.0.1"


@pytest.mark.parametrize(
    "bad",
    [
        {"topic_root": "tether/+"},
        {"topic_root": "$SYS"},
        {"cloud_username": "ns/node"},
        {"port": 70000},
        {"auth_token": "t"},  # a token without a URL
    ],
)
def test_settings_that_cannot_work_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        BrokerSettings(**bad)  # type: ignore[arg-type]
