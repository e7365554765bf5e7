"""Mosquitto as production runs it, in the conformance suite: the configuration of
``tether broker mosquitto-config`` (an mTLS listener for nodes with the cloud's CA, Tether's
ACL, a CRL kept by ``tether broker crl-sync``, a loopback password listener for the bridge).

The real edge agent, activated with a CSR, converges through it; another node can neither
read nor write its topics; once revoked it is cut off at once (session takeover) and
refused at its next handshake after ``crl-sync`` reloads Mosquitto. (The suite's other
Mosquitto is anonymous, for the scenarios every broker shares.)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from broker.cli import app
from cloud_api.runtime import Cloud
from cloud_api.settings import CloudSettings
from edge_runtime.activation import activate
from launcher.mosquitto import mosquitto_binary, running_mosquitto
from schemas.names import node_client_id
from tests.broker.mosquitto_users import as_ourselves
from tests.broker.tls_clients import TlsProbe, certified_node, client_context
from tests.brokers.conftest import BRIDGE_PASSWORD, TOPICS, is_online, wait_for
from tests.brokers.nodes import NAMESPACE
from tests.cloud_api.conftest import admin_token, serving
from tests.conftest import free_port

pytestmark = [pytest.mark.mosquitto, pytest.mark.slow]  # an agent child process: ~6 s


def sync_crl(url: str, token: str, crl: Path, *extra: str) -> None:
    result = CliRunner().invoke(app, ["crl-sync", "--server", url, "--token", token,
                                      "--out", str(crl), "--once", *extra])
    assert result.exit_code == 0, result.output


@pytest.fixture
def agent_processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        process.kill()
        process.wait()


def test_production_mosquitto_mtls_acl_crl_with_the_real_agent(
    tmp_path: Path, unique_name: str, agent_processes: list[subprocess.Popen[bytes]]
) -> None:
    if mosquitto_binary() is None or shutil.which("mosquitto_passwd") is None:
        pytest.skip("mosquitto and mosquitto_passwd are not installed (apt-get install mosquitto)")
    tls_port, password_port = free_port(), free_port()
    settings = CloudSettings(
        data_dir=tmp_path / "cloud", advertised_mqtts_url=f"mqtts://127.0.0.1:{tls_port}",
        mqtt_url=f"mqtt://127.0.0.1:{password_port}", mqtt_password=SecretStr(BRIDGE_PASSWORD),
        topic_root=TOPICS.root, kick_revoked_sessions=True,
    )
    with Cloud(settings) as cloud, serving(cloud.app) as url:
        token = admin_token(cloud)
        tls = cloud.issue_server_certificate(tmp_path / "tls")
        passwords, crl, conf = tmp_path / "passwords", tmp_path / "crl.pem", tmp_path / "conf"
        subprocess.run([shutil.which("mosquitto_passwd") or "mosquitto_passwd", "-b", "-c",
                        str(passwords), settings.mqtt_username, BRIDGE_PASSWORD],
                       check=True, capture_output=True)
        os.chmod(passwords, 0o600)
        sync_crl(url, token, crl)  # Mosquitto will not start without it
        made = CliRunner().invoke(app, [
            "mosquitto-config", "--output", str(conf), "--cafile", str(tls.cafile),
            "--certfile", str(tls.certfile), "--keyfile", str(tls.keyfile),
            "--tls-port", str(tls_port), "--tls-host", "127.0.0.1", "--crl-file", str(crl),
            "--password-port", str(password_port), "--password-file", str(passwords),
            "--topic-root", TOPICS.root, *as_ourselves(),
        ])
        assert made.exit_code == 0, made.output
        with running_mosquitto(conf / "mosquitto.conf", tls_port) as mosquitto:
            pid_file = tmp_path / "mosquitto.pid"
            pid_file.write_text(f"{mosquitto.pid}\n")
            assert cloud.start_bridge().wait_ready(10), "the bridge did not log in"
            name = unique_name
            cloud.create_node(name)
            data_dir, log = tmp_path / "edge", tmp_path / "edge.log"
            activate(url, cloud.issue_activation(name).token, data_dir,
                     identity=f"{NAMESPACE}/{name}")
            env = {**os.environ, "TETHER_EDGE_TOPIC_ROOT": TOPICS.root,
                   "TETHER_EDGE_RECONNECT_MIN_SECONDS": "0.2",
                   "TETHER_EDGE_RECONNECT_MAX_SECONDS": "1"}
            with log.open("ab") as out:
                agent_processes.append(subprocess.Popen(
                    [sys.executable, "-m", "tether", "edge", "run", "--data-dir", str(data_dir)],
                    stdout=out, stderr=subprocess.STDOUT, env=env))
            api = httpx.Client(base_url=f"{url}/v1/namespaces/{NAMESPACE}", timeout=10,
                               headers={"Authorization": f"Bearer {token}"})
            with api:
                wait_for(lambda: is_online(cloud, name), timeout=20, what=f"agent online ({log})")
                assert api.patch(f"/nodes/{name}/shadow", json={
                    "state": {"desired": {"properties": {"fan": "on"}}}}).status_code == 200

                def converged() -> bool:
                    state = api.get(f"/nodes/{name}/shadow").json()["state"]
                    return bool(state["reported"].get("properties") == {"fan": "on"}
                                and not state["delta"])

                wait_for(converged, timeout=15, what=f"the agent converged ({log})")
                # Another node: the ACL keeps it off the agent's topics.
                other = certified_node(cloud, f"{name}-b", tmp_path)
                intruder = TlsProbe(tls_port, client_context(tls.cafile, other),
                                    client_id=node_client_id(NAMESPACE, f"{name}-b"))
                try:
                    code = intruder.connect()
                    assert code is not None and not code.is_failure
                    root = TOPICS.node_root(NAMESPACE, name)
                    intruder.subscribe(f"{root}/#")
                    intruder.publish(f"{root}/shadow/update",
                                     b'{"state": {"reported": {"forged": true}}}')
                    assert api.patch(f"/nodes/{name}/shadow", json={
                        "state": {"desired": {"properties": {"fan": "off"}}}}).status_code == 200
                    time.sleep(0.5)
                    assert intruder.messages.empty(), "node B read node A's topics"
                    reported = api.get(f"/nodes/{name}/shadow").json()["state"]["reported"]
                    assert "forged" not in reported, "node B wrote node A's reported state"
                finally:
                    intruder.close()
                # Revoked: cut off now, refused at the next handshake once the CRL is reloaded.
                before = len(log.read_text())
                cloud.revoke_node(name)
                sync_crl(url, token, crl, "--mosquitto-pid-file", str(pid_file))
                node_files = type(other)(data_dir / "node.crt", data_dir / "node.key", "")

                def refused() -> bool:
                    probe = TlsProbe(tls_port, client_context(tls.cafile, node_files))
                    try:
                        code = probe.connect()
                        return code is None or code.is_failure
                    finally:
                        probe.close()

                wait_for(refused, timeout=10, what="Mosquitto refusing the revoked node")

                def cut_off() -> bool:
                    since = log.read_text()[before:]
                    return "ended" in since or "cannot reach the broker" in since

                wait_for(cut_off, timeout=10, what=f"the agent cut off ({log})")
