"""Certificate identities on the brokers that map a client certificate to a user:
RabbitMQ (``mqtt.ssl_cert_login``, the CN asked of the cloud's webhook with no password)
and NATS (``verify_and_map``, the CN's subject in the users ``nats-config`` writes).

The real edge agent, activated with a CSR, connects with its certificate and no username
(``TETHER_EDGE_CERTIFICATE_LOGIN``), converges, and once revoked is cut off and refused.
On NATS every client of the TLS listener needs a certificate, the bridge too: it presents
one (``mqtt_certfile``, ``mqtt_certificate_login``). Each broker here is a private TLS
instance of its own, with a server certificate of the suite's CA (the clouds' CA too).
"""

from __future__ import annotations

import os
import queue
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import SecretStr

from cloud_api.runtime import Cloud
from cloud_api.settings import CloudSettings
from edge_runtime.activation import activate
from launcher.brokers import RunningBroker, broker_kind
from launcher.brokers.nats import running_nats
from schemas.names import node_client_id
from tests.brokers.conftest import (
    BRIDGE_PASSWORD,
    BRIDGE_USER,
    TOPICS,
    WEBHOOK_TOKEN,
    Gate,
    Pki,
    is_online,
    started_broker,
    wait_for,
)
from tests.brokers.nodes import NAMESPACE
from tests.cloud_api.conftest import serving
from tests.paho_clients import release_sockets

pytestmark = pytest.mark.slow  # a NATS of its own and two agents: ~12 s
BROKERS_WANTED = ("rabbitmq",)


class Setup:
    def __init__(self, gate: Gate, pki: Pki, tmp_path: Path) -> None:
        self.gate, self.pki, self.tmp_path = gate, pki, tmp_path
        self.stack = ExitStack()
        self.agents: list[subprocess.Popen[bytes]] = []

    def cloud(self, **overrides: Any) -> tuple[Cloud, httpx.Client]:
        data_dir = self.tmp_path / "cloud"
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / "admin.token").write_text(WEBHOOK_TOKEN + "\n")
        (data_dir / "admin.token").chmod(0o600)
        settings = CloudSettings(
            data_dir=data_dir, mqtt_username=BRIDGE_USER,
            mqtt_password=SecretStr(BRIDGE_PASSWORD), topic_root=TOPICS.root,
            ca_certfile=self.pki.cafile, ca_keyfile=self.pki.cakey, **overrides)
        cloud = self.stack.enter_context(Cloud(settings))
        self.gate.cloud = cloud
        self.stack.callback(setattr, self.gate, "cloud", None)
        bridge = cloud.start_bridge()
        assert bridge.wait_ready(20), f"the bridge did not subscribe on {settings.mqtt_url}"
        url = self.stack.enter_context(serving(cloud.app))
        api = self.stack.enter_context(httpx.Client(
            base_url=f"{url}/v1/namespaces/{NAMESPACE}", timeout=10,
            headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"}))
        return cloud, api

    def agent(self, api: httpx.Client, cloud: Cloud, name: str) -> Path:
        """Activate ``name`` with a CSR and run its agent with certificate_login; its log."""
        cloud.create_node(name)
        data_dir = self.tmp_path / "edge"
        activate(str(api.base_url.copy_with(path="")).rstrip("/"),
                 cloud.issue_activation(name).token, data_dir, identity=f"{NAMESPACE}/{name}")
        return data_dir

    def run(self, data_dir: Path) -> Path:
        log = self.tmp_path / "edge.log"
        env = {**os.environ, "TETHER_EDGE_TOPIC_ROOT": TOPICS.root,
               "TETHER_EDGE_CERTIFICATE_LOGIN": "true",
               "TETHER_EDGE_RECONNECT_MIN_SECONDS": "0.2", "TETHER_EDGE_RECONNECT_MAX_SECONDS": "1"}
        with log.open("ab") as out:
            self.agents.append(subprocess.Popen(
                [sys.executable, "-m", "tether", "edge", "run", "--data-dir", str(data_dir)],
                stdout=out, stderr=subprocess.STDOUT, env=env))
        return log

    def close(self) -> None:
        for process in self.agents:
            process.kill()
            process.wait()
        self.stack.close()


@pytest.fixture
def setup(gate: Gate, pki: Pki, tmp_path: Path) -> Iterator[Setup]:
    made = Setup(gate, pki, tmp_path)
    try:
        yield made
    finally:
        made.close()


def cert_connect(url: str, pki: Pki, data_dir: Path, name: str, *,
                 username: str | None = None) -> str:
    """Connect once with the node's certificate (and ``username``, no password)."""
    answered: queue.Queue[str] = queue.Queue()
    context = ssl.create_default_context(cafile=str(pki.cafile))
    context.load_cert_chain(str(data_dir / "node.crt"), str(data_dir / "node.key"))
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=node_client_id(NAMESPACE, name),
                         protocol=mqtt.MQTTv311)
    client.tls_set_context(context)
    if username is not None:
        client.username_pw_set(username, None)
    client.on_connect = lambda c, u, flags, reason, props: answered.put(str(reason))
    parts = urlsplit(url)
    try:
        client.connect(parts.hostname or "localhost", parts.port or 8883)
    except (OSError, ssl.SSLError) as exc:
        return f"connection failed: {exc}"
    client.loop_start()
    try:
        return answered.get(timeout=10)
    except queue.Empty:
        return "no CONNACK"
    finally:
        client.disconnect()
        client.loop_stop()
        release_sockets(client)


def converge_then_revoke(
    setup: Setup, cloud: Cloud, api: httpx.Client, name: str, url: str,
    nodes_changed: Callable[[], None],
) -> None:
    data_dir = setup.agent(api, cloud, name)
    nodes_changed()
    log = setup.run(data_dir)
    wait_for(lambda: is_online(cloud, name), timeout=20, what=f"the agent online (log {log})")
    assert api.patch(f"/nodes/{name}/shadow",
                     json={"state": {"desired": {"properties": {"fan": "on"}}}}).status_code == 200

    def converged() -> bool:
        state = api.get(f"/nodes/{name}/shadow").json()["state"]
        return bool(state["reported"].get("properties") == {"fan": "on"} and not state["delta"])

    wait_for(converged, timeout=15, what=f"the agent converged (log {log})")
    assert cert_connect(url, setup.pki, data_dir, name) == "Success"
    cloud.revoke_node(name)
    nodes_changed()
    # Cut off (session takeover), then refused at each reconnect, whatever it presents.
    wait_for(lambda: "refused this node" in log.read_text(), timeout=15,
             what=f"the revoked agent cut off and refused (log {log})")
    assert cert_connect(url, setup.pki, data_dir, name) != "Success"


def test_rabbitmq_maps_a_node_certificate_and_asks_the_cloud(
    setup: Setup, started: dict[str, Future[RunningBroker]], unique_name: str
) -> None:
    rabbitmq = started_broker(started, "rabbitmq")
    assert rabbitmq.tls_url is not None
    cloud, api = setup.cloud(mqtt_url=rabbitmq.url, advertised_mqtts_url=rabbitmq.tls_url,
                             kick_revoked_sessions=True)
    name = unique_name
    converge_then_revoke(setup, cloud, api, name, rabbitmq.tls_url, lambda: None)
    asked = [body for path, body in setup.gate.asked if path.endswith("/rabbitmq/user")]
    assert any(f"username=default%2F{name}" in body and "password=" not in body
               for body in asked), "RabbitMQ never asked about the certificate's CN"


def test_nats_maps_a_node_certificate_from_the_users_nats_config_writes(
    setup: Setup, webhook: str, tmp_path: Path, unique_name: str
) -> None:
    if (missing := broker_kind("nats").missing()) is not None:
        pytest.skip(f"nats: {missing}")
    tls = setup.pki.listener()
    nats = setup.stack.enter_context(running_nats(
        tmp_path / "nats", users={BRIDGE_USER: BRIDGE_PASSWORD},
        cloud=webhook.removesuffix("/v1/broker"), topic_root=TOPICS.root, tls=tls))
    assert nats.users_changed is not None
    cloud, api = setup.cloud(
        mqtt_url=tls.url, advertised_mqtts_url=tls.url, mqtt_cafile=setup.pki.cafile,
        mqtt_certfile=setup.pki.bridge_cert, mqtt_keyfile=setup.pki.bridge_key,
        mqtt_certificate_login=True, kick_revoked_sessions=True)
    converge_then_revoke(setup, cloud, api, unique_name, tls.url, nats.users_changed)
