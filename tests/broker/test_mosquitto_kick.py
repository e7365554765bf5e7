"""A revoked node still connected to Mosquitto is cut off at once (``cloud_api.mqtt.kicking``).

Mosquitto cannot ask the cloud, and its CRL is only checked at a handshake, so a node
connected when it is revoked would otherwise keep its session. The cloud takes the
session over (same client id, as the bridge user) and leaves: a real ``mosquitto`` with
the generated configuration, a password listener for the cloud and an mTLS listener for
nodes. Skipped where no mosquitto binary is installed.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from broker.cli import app
from cloud_api.runtime import Cloud
from cloud_api.settings import CloudSettings
from launcher.mosquitto import mosquitto_binary, running_mosquitto
from schemas.names import node_client_id
from tests.broker.mosquitto_users import as_ourselves
from tests.broker.tls_clients import TlsProbe, certified_node, client_context
from tests.conftest import free_port

BRIDGE_PASSWORD = "bridge-secret-for-the-test"


@pytest.mark.mosquitto
def test_a_connected_node_is_cut_off_when_revoked_and_others_stay(tmp_path: Path) -> None:
    if mosquitto_binary() is None or not os.path.exists("/usr/bin/mosquitto_passwd"):
        pytest.skip("mosquitto and mosquitto_passwd are not installed (apt-get install mosquitto)")
    tls_port, password_port = free_port(), free_port()
    settings = CloudSettings(
        data_dir=tmp_path / "cloud", database_url=f"sqlite:///{tmp_path / 'c.db'}",
        advertised_mqtts_url=f"mqtts://127.0.0.1:{tls_port}",
        mqtt_url=f"mqtt://127.0.0.1:{password_port}", mqtt_password=BRIDGE_PASSWORD,
    )
    with Cloud(settings) as cloud:
        tls = cloud.issue_server_certificate(tmp_path / "tls")
        a, b = certified_node(cloud, "a", tmp_path), certified_node(cloud, "b", tmp_path)
        passwords = tmp_path / "passwords"
        subprocess.run(["/usr/bin/mosquitto_passwd", "-b", "-c", str(passwords),
                        settings.mqtt_username, BRIDGE_PASSWORD], check=True, capture_output=True)
        os.chmod(passwords, 0o600)
        conf = tmp_path / "conf"
        result = CliRunner().invoke(app, [
            "mosquitto-config", "--output", str(conf), "--cafile", str(tls.cafile),
            "--certfile", str(tls.certfile), "--keyfile", str(tls.keyfile),
            "--tls-port", str(tls_port), "--tls-host", "127.0.0.1",
            "--password-port", str(password_port), "--password-file", str(passwords),
            *as_ourselves(),  # our tmp dir is private: Mosquitto runs as us
        ])
        assert result.exit_code == 0, result.output
        with running_mosquitto(conf / "mosquitto.conf", tls_port):
            probes = [
                TlsProbe(tls_port, client_context(tls.cafile, files),
                         client_id=node_client_id("default", node), clean_session=False)
                for node, files in (("a", a), ("b", b))
            ]
            try:
                assert [probe.connect() for probe in probes] == [0, 0]
                started = time.monotonic()
                cloud.revoke_node("a")
                assert probes[0].wait_lost(), "the revoked node kept its connection"
                print(f"\nrevoked node cut off {1000 * (time.monotonic() - started):.0f} ms "
                      "after the revocation")
                assert not probes[1].wait_lost(timeout=0.5)  # the other node stays
            finally:
                for probe in probes:
                    probe.close()
