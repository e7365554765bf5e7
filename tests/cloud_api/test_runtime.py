"""``Cloud`` as a whole: what survives a restart, the programmatic API, and the CLI."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from cloud_api.cli import app
from cloud_api.errors import AlreadyExists, ConfigError, NotFound, Unauthorized
from cloud_api.runtime import Cloud, bind_http
from cloud_api.services.shadows import get_document, update_shadow
from cloud_api.settings import CloudSettings
from cloud_api.store.models import NodeMode
from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]


def test_everything_survives_a_restart(make_settings: Callable[..., CloudSettings]) -> None:
    settings = make_settings()
    with Cloud(settings) as first:
        first.create_node("n1", labels={"site": "a"})
        with first.store.session() as session:
            report = {"state": {"reported": {"t": 1}}}
            update_shadow(session, "default", "n1", report, writable=("reported",), now=5)
        spent = first.issue_activation("n1").token
        password = first.activate(spent).mqtt.password
        token = Path(first.admin_token_path).read_text()

    with Cloud(settings) as second:
        assert Path(second.admin_token_path).read_text() == token
        assert second.create_node("n1", exist_ok=True).labels == {"site": "a"}
        with second.store.session() as session:
            document = get_document(session, "default", "n1")
        assert (document.reported, document.version, document.timestamp) == ({"t": 1}, 1, 5)
        assert second.authenticate_mqtt("default/n1", password)
        with pytest.raises(Unauthorized):
            second.activate(spent)


def test_the_programmatic_api_for_tether_up(cloud: Cloud) -> None:
    node = cloud.create_node("local", labels={"tether.io/local": "true"}, mode=NodeMode.NATIVE)
    assert (node.namespace, node.name, node.online) == ("default", "local", False)
    assert cloud.create_node("local", exist_ok=True) == node
    with pytest.raises(AlreadyExists):
        cloud.create_node("local")
    with pytest.raises(NotFound):
        cloud.issue_activation("nobody")
    init = cloud.issue_activation("local")
    granted = cloud.activate(init.token)
    assert granted.mqtt.username == "default/local"
    assert granted.mqtt.url == cloud.settings.node_mqtt_url
    assert cloud.authenticate_mqtt("default/local", granted.mqtt.password)
    bridge_secret = cloud.settings.bridge_secret_path.read_text().strip()
    assert cloud.authenticate_mqtt(cloud.settings.mqtt_username, bridge_secret)
    assert os.stat(cloud.settings.bridge_secret_path).st_mode & 0o777 == 0o600


def test_a_port_in_use_is_one_config_error_naming_the_flag() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        message = f"port {port} on 127.0.0.1 is already in use: choose another with --http-port"
        with pytest.raises(ConfigError, match=message):
            bind_http("127.0.0.1", port)
        flags = ["serve", "--http-port", str(port), "--data-dir", "/nonexistent/never"]
        result = CliRunner().invoke(app, flags)
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [f"error: {message}"]


def test_bad_flags_are_one_line_too() -> None:
    result = CliRunner().invoke(app, ["serve", "--mqtt-url", "http://x", "--http-port", "0"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: mqtt_url: Value error, MQTT URL 'http://x' must look")


@pytest.mark.mosquitto
def test_serve_runs_the_api_and_the_bridge_until_interrupted(
    tmp_path: Path, mosquitto_url: str
) -> None:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "TETHER_CLOUD_TOPIC_ROOT": f"t{port}/tether/v1"}
    command = [sys.executable, "-m", "cloud_api.cli", "serve", "--http-port", str(port),
               "--data-dir", str(tmp_path), "--mqtt-url", mosquitto_url, "--log-level", "warning"]
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, process.communicate()
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).json()
                if health["bridge"] == "connected":
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the cloud did not come up"
            time.sleep(0.05)
        token = (tmp_path / "admin.token").read_text().strip()
        headers = {"Authorization": f"Bearer {token}"}
        response = httpx.get(f"http://127.0.0.1:{port}/v1/namespaces", headers=headers)
        assert response.json()[0]["name"] == "default"
    finally:
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr
    assert f"API: http://127.0.0.1:{port}" in stdout
    assert f"admin token: {tmp_path / 'admin.token'}" in stdout


def test_server_certificates_are_kept_while_they_serve_and_replaced_when_not(
    make_settings: Callable[..., CloudSettings], tmp_path: Path
) -> None:
    directory = tmp_path / "api-tls"
    settings = make_settings(server_certificate_days=3)
    with Cloud(settings) as cloud:
        first = cloud.issue_server_certificate(directory, common_name="api", hosts=["edge.example"])
        pem = first.certfile.read_text()
        assert oct(first.keyfile.stat().st_mode & 0o777) == "0o600"
        again = cloud.issue_server_certificate(directory, common_name="api", hosts=["edge.example"])
        assert again.certfile.read_text() == pem  # a restart changes nothing clients see
        fewer = cloud.issue_server_certificate(directory, common_name="api")
        assert fewer.certfile.read_text() == pem  # a subset of the names is still served
        more = cloud.issue_server_certificate(directory, common_name="api", hosts=["10.0.0.7"])
        assert more.certfile.read_text() != pem  # a new name needs a new certificate
        pem = more.certfile.read_text()
        more.keyfile.write_text(cloud_key_of_another_certificate(cloud))
        fixed = cloud.issue_server_certificate(directory, common_name="api", hosts=["10.0.0.7"])
        assert fixed.certfile.read_text() != pem  # a key that does not match is replaced
    with Cloud(settings, clock=lambda: time.time() + 1.5 * 86400) as cloud:
        pem = fixed.certfile.read_text()
        kept = cloud.issue_server_certificate(directory, common_name="api", hosts=["10.0.0.7"])
        assert kept.certfile.read_text() == pem  # half its life left
    with Cloud(settings, clock=lambda: time.time() + 2.5 * 86400) as cloud:
        pem = fixed.certfile.read_text()
        renewed = cloud.issue_server_certificate(directory, common_name="api", hosts=["10.0.0.7"])
        assert renewed.certfile.read_text() != pem  # under a third of its life left


def cloud_key_of_another_certificate(cloud: Cloud) -> str:
    _, key = cloud.authority.issue("other", sans=["127.0.0.1"], days=1, server=True)
    return key
