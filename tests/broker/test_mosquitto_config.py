"""The generated Mosquitto configuration, run by a real ``mosquitto`` with real paho clients.

Proves the production path enforces what the embedded broker does: a node's certificate
CN is its username, and the ACL patterns confine it to its own topics; no certificate, or
one from another CA, is refused. Skipped where no mosquitto binary is installed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from broker.cli import app
from broker.mosquitto import render_acl
from launcher.mosquitto import mosquitto_binary, running_mosquitto
from tests.broker.mosquitto_users import as_ourselves
from tests.broker.tls_clients import Pki, TlsProbe, client_context
from tests.conftest import free_port

ROOT = "tether/v1"
NODE_A, NODE_B = "ns1/node-a", "ns1/node-b"


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki.create(tmp_path / "pki")


@pytest.fixture
def mosquitto(tmp_path: Path, pki: Pki) -> Iterator[int]:
    binary = mosquitto_binary()
    if binary is None:
        pytest.skip("mosquitto is not installed")
    port = free_port()
    out = tmp_path / "conf"
    result = CliRunner().invoke(app, [
        "mosquitto-config", "--output", str(out), "--cafile", str(pki.cafile),
        "--certfile", str(pki.certfile), "--keyfile", str(pki.keyfile),
        "--tls-port", str(port), "--tls-host", "127.0.0.1",
        *as_ourselves(),  # our tmp dir is private: Mosquitto runs as us
    ])
    assert result.exit_code == 0, result.output
    with running_mosquitto(out / "mosquitto.conf", port):
        yield port


def test_the_acl_has_the_topic_contract() -> None:
    acl = render_acl()
    assert "pattern read tether/v1/%u/#" in acl
    for suffix in ("shadow/get", "shadow/update", "resources/get", "status", "functions/+/+/result",
                   "logs/data", "events"):
        assert f"pattern write tether/v1/%u/{suffix}\n" in acl
    assert "user tether-cloud\ntopic readwrite tether/v1/#" in acl


def test_the_config_has_mtls_and_nodelay(tmp_path: Path, pki: Pki) -> None:
    out = tmp_path / "c"
    result = CliRunner().invoke(app, [
        "mosquitto-config", "--output", str(out), "--cafile", str(pki.cafile),
        "--certfile", str(pki.certfile), "--keyfile", str(pki.keyfile), *as_ourselves(),
    ])
    assert result.exit_code == 0, result.output
    config = (out / "mosquitto.conf").read_text()
    for line in ("require_certificate true", "use_identity_as_username true",
                 "set_tcp_nodelay true", "allow_anonymous false", f"cafile {out.absolute()}/ca.crt"):
        assert line in config.splitlines()


@pytest.mark.mosquitto
def test_a_node_certificate_is_confined_to_its_own_topics(mosquitto: int, pki: Pki) -> None:
    a = TlsProbe(mosquitto, client_context(pki.cafile, pki.client(NODE_A)))
    b = TlsProbe(mosquitto, client_context(pki.cafile, pki.client(NODE_B)))
    try:
        assert a.connect() == 0 and b.connect() == 0
        # b listens on its own topics and a's; a tries to write into b's
        assert b.subscribe(f"{ROOT}/{NODE_B}/#") == 1
        assert a.subscribe(f"{ROOT}/{NODE_B}/#") == 1  # mosquitto grants, then delivers nothing
        a.publish(f"{ROOT}/{NODE_B}/shadow/update", b'{"from": "a"}')
        a.publish(f"{ROOT}/{NODE_B}/status", b'{"from": "a"}')
        b.expect_nothing(0.5)
        # b's own writes reach b, but never a
        b.publish(f"{ROOT}/{NODE_B}/shadow/update", b'{"from": "b"}')
        assert b.expect().payload == b'{"from": "b"}'
        a.expect_nothing(0.5)
        # a may not write a topic outside its request list even under its own root
        assert a.subscribe(f"{ROOT}/{NODE_A}/#") == 1
        a.publish(f"{ROOT}/{NODE_A}/shadow/update/delta", b"{}")
        a.expect_nothing(0.5)
        a.publish(f"{ROOT}/{NODE_A}/shadow/update", b"{}")
        assert a.expect().topic == f"{ROOT}/{NODE_A}/shadow/update"
    finally:
        a.close()
        b.close()


@pytest.mark.mosquitto
def test_a_node_certificate_cannot_read_or_forge_another_nodes_logs(mosquitto: int, pki: Pki) -> None:
    """Node a, with its own certificate, sees nothing of b's logs and events and cannot
    forge them nor send b a log request (requests are the cloud's)."""
    a = TlsProbe(mosquitto, client_context(pki.cafile, pki.client(NODE_A)))
    b = TlsProbe(mosquitto, client_context(pki.cafile, pki.client(NODE_B)))
    try:
        assert a.connect() == 0 and b.connect() == 0
        assert a.subscribe(f"{ROOT}/{NODE_B}/logs/data") == 1  # granted, then nothing delivered
        assert b.subscribe(f"{ROOT}/{NODE_B}/#") == 1
        b.publish(f"{ROOT}/{NODE_B}/logs/data", b'{"streamId": "s", "seq": 0}')
        assert b.expect().topic == f"{ROOT}/{NODE_B}/logs/data"  # b may write its own logs
        a.expect_nothing(0.5)
        for topic in (f"{ROOT}/{NODE_B}/logs/data", f"{ROOT}/{NODE_B}/events",
                      f"{ROOT}/{NODE_B}/logs/request"):
            a.publish(topic, b'{"from": "a"}')
        b.expect_nothing(0.5)
        b.publish(f"{ROOT}/{NODE_B}/events", b'{"events": []}')
        assert b.expect().topic == f"{ROOT}/{NODE_B}/events"
        b.publish(f"{ROOT}/{NODE_B}/logs/request", b"{}")  # a node does not ask itself either
        b.expect_nothing(0.5)
    finally:
        a.close()
        b.close()


@pytest.mark.mosquitto
@pytest.mark.parametrize("who", ["no certificate", "another CA"])
def test_mosquitto_refuses_without_a_certificate_of_our_ca(
    mosquitto: int, pki: Pki, tmp_path: Path, who: str
) -> None:
    if who == "no certificate":
        context = client_context(pki.cafile)
    else:
        context = client_context(pki.cafile, Pki.create(tmp_path / "x", name="Other").client(NODE_A))
    probe = TlsProbe(mosquitto, context, NODE_A, "anything")
    try:
        assert probe.connect() is None
    finally:
        probe.close()
