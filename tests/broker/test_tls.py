"""The embedded broker's TLS listener: mTLS identities from certificates, and revocation."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.access import password_table
from broker.embedded import EmbeddedBroker, run_in_thread
from broker.settings import BrokerSettings
from schemas.topics import TopicScheme
from tests.broker.clients import WAIT, Probe
from tests.broker.conftest import NODE_A, NODE_B, PASSWORDS, Topics
from tests.broker.tls_clients import Pki, TlsProbe, client_context

SUCCESS = 0


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki.create(tmp_path / "pki")


@pytest.fixture
def revoked() -> set[str]:
    return set()


def tls_settings(topic_scheme: TopicScheme, pki: Pki, *, require: bool = True) -> BrokerSettings:
    return BrokerSettings(
        port=0,
        tls_port=0,
        certfile=pki.certfile,
        keyfile=pki.keyfile,
        cafile=pki.cafile,
        require_client_cert=require,
        topic_root=topic_scheme.root,
        connect_timeout_seconds=1.0,
        recheck_seconds=None,
    )


@pytest.fixture
def broker(topic_scheme: TopicScheme, pki: Pki, revoked: set[str]) -> Iterator[EmbeddedBroker]:
    def current(identity: str, serial: str) -> bool:
        return serial not in revoked

    settings = tls_settings(topic_scheme, pki)
    with run_in_thread(settings, password_table(PASSWORDS), check_certificate=current) as running:
        yield running


@pytest.fixture
def probes() -> Iterator[list[TlsProbe]]:
    made: list[TlsProbe] = []
    yield made
    for probe in made:
        probe.close()


def test_a_certificate_is_the_identity(
    broker: EmbeddedBroker, pki: Pki, topics: Topics, probes: list[TlsProbe]
) -> None:
    node_a = TlsProbe(broker.tls_port, client_context(pki.cafile, pki.client(NODE_A)))
    probes.append(node_a)
    assert node_a.connect() == SUCCESS  # no username: the CN is used
    assert node_a.subscribe(topics.a("shadow/get/accepted")) == 1
    assert node_a.subscribe(topics.b("shadow/get/accepted")).is_failure

    named = TlsProbe(broker.tls_port, client_context(pki.cafile, pki.client(NODE_A)), NODE_A)
    probes.append(named)
    assert named.connect() == SUCCESS  # the same name as the CN is fine


def test_a_username_other_than_the_cn_is_refused(
    broker: EmbeddedBroker, pki: Pki, probes: list[TlsProbe]
) -> None:
    other = TlsProbe(broker.tls_port, client_context(pki.cafile, pki.client(NODE_A)), NODE_B, "pw-b")
    probes.append(other)
    code = other.connect()
    assert code is not None and code.is_failure


@pytest.mark.parametrize("who", ["no certificate", "another CA"])
def test_tls_refuses_without_a_certificate_of_our_ca(
    broker: EmbeddedBroker, pki: Pki, tmp_path: Path, probes: list[TlsProbe], who: str
) -> None:
    if who == "no certificate":
        context = client_context(pki.cafile)
    else:
        stranger = Pki.create(tmp_path / "other", name="Other CA").client(NODE_A)
        context = client_context(pki.cafile, stranger)
    probe = TlsProbe(broker.tls_port, context, NODE_A, PASSWORDS[NODE_A])
    probes.append(probe)
    assert probe.connect() is None  # refused by TLS, before any CONNACK
    assert probe.connack is None


def test_passwords_still_work_on_the_plain_listener(broker: EmbeddedBroker) -> None:
    probe = Probe(broker.port, NODE_A, PASSWORDS[NODE_A])
    try:
        assert probe.connect() == SUCCESS
    finally:
        probe.close()


def test_a_revoked_certificate_is_refused_and_disconnected(
    broker: EmbeddedBroker, pki: Pki, revoked: set[str], probes: list[TlsProbe]
) -> None:
    files = pki.client(NODE_A)
    live = TlsProbe(broker.tls_port, client_context(pki.cafile, files))
    probes.append(live)
    assert live.connect() == SUCCESS

    revoked.add(files.serial)
    assert broker.disconnect_user_threadsafe(NODE_A) == 1
    assert live.wait_lost()

    again = TlsProbe(broker.tls_port, client_context(pki.cafile, files))
    probes.append(again)
    code = again.connect()
    assert code is not None and code.is_failure


def test_a_client_revoked_between_connack_and_its_message_loop_is_disconnected(
    topic_scheme: TopicScheme, pki: Pki, revoked: set[str], probes: list[TlsProbe],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """amqtt sends CONNACK before it starts the handler; a revocation landing in between
    used to be lost (the handler had no disconnect waiter yet) and the node stayed on."""
    from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler

    real_start = BrokerProtocolHandler.start

    async def slow_start(self: BrokerProtocolHandler) -> None:
        await asyncio.sleep(0.5)  # the window, made wide
        await real_start(self)

    monkeypatch.setattr(BrokerProtocolHandler, "start", slow_start)
    settings = tls_settings(topic_scheme, pki)
    with run_in_thread(settings, password_table(PASSWORDS),
                       check_certificate=lambda i, s: s not in revoked) as broker:
        files = pki.client(NODE_A)
        live = TlsProbe(broker.tls_port, client_context(pki.cafile, files))
        probes.append(live)
        assert live.connect() == SUCCESS  # CONNACK is in; the message loop is not yet
        revoked.add(files.serial)
        assert broker.disconnect_user_threadsafe(NODE_A) == 1
        assert live.wait_lost()


def test_recheck_closes_clients_no_longer_allowed(
    topic_scheme: TopicScheme, pki: Pki, probes: list[TlsProbe]
) -> None:
    allowed = {"yes": True}
    settings = tls_settings(topic_scheme, pki)
    with run_in_thread(
        settings, password_table(PASSWORDS), check_certificate=lambda i, s: allowed["yes"]
    ) as broker:
        live = TlsProbe(broker.tls_port, client_context(pki.cafile, pki.client(NODE_A)))
        probes.append(live)
        assert live.connect() == SUCCESS
        allowed["yes"] = False
        assert broker._loop is not None
        closed = asyncio.run_coroutine_threadsafe(broker.recheck(), broker._loop).result(WAIT)
        assert closed == 1


def test_optional_client_certificates_let_password_clients_use_tls(
    topic_scheme: TopicScheme, pki: Pki, probes: list[TlsProbe]
) -> None:
    settings = tls_settings(topic_scheme, pki, require=False)
    with run_in_thread(settings, password_table(PASSWORDS)) as broker:
        probe = TlsProbe(broker.tls_port, client_context(pki.cafile), NODE_A, PASSWORDS[NODE_A])
        probes.append(probe)
        assert probe.connect() == SUCCESS
        assert broker.tls_url.startswith("mqtts://127.0.0.1:")


def test_tls_port_needs_its_files() -> None:
    with pytest.raises(ValueError, match="tls_port needs certfile, keyfile, cafile"):
        BrokerSettings(port=0, tls_port=0)
