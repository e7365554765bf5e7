"""compose/ cannot be run here (no Docker engine): check it names only what exists, that
its ports and services agree, and run the broker service's script (compose/broker.sh) with
Mosquitto on free ports."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from tether import build_app

COMPOSE = Path(__file__).resolve().parents[1] / "compose"


def test_dockerfile_copies_only_what_the_repository_has() -> None:
    root = COMPOSE.parent
    for line in (COMPOSE / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (root / source).exists(), f"Dockerfile copies missing {source}"


def test_compose_commands_use_real_flags() -> None:
    stack = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())
    command = stack["services"]["cloud"]["command"]
    assert command[:2] == ["cloud", "serve"]
    result = CliRunner().invoke(build_app("cloud"), ["cloud", "serve", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for flag in command[2:]:
        name = flag.split("=", 1)[0]
        assert re.search(rf"{re.escape(name)}\b", result.output), f"tether cloud serve has no {name}"


def test_one_image_name_everywhere_tagged_with_the_package_version() -> None:
    """compose builds the image the kube manifest and the kube function runtimes name."""
    from schemas.images import TETHER_IMAGE

    pyproject = (COMPOSE.parent / "pyproject.toml").read_text()
    version = re.search(r'^version = "([^"]+)"', pyproject, re.MULTILINE)
    assert version is not None and TETHER_IMAGE.endswith(f":{version.group(1)}")
    stack = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())
    assert stack["services"]["cloud"]["image"] == TETHER_IMAGE
    assert f"-t {TETHER_IMAGE} " in (COMPOSE / "Dockerfile").read_text()


# -- the broker service: Mosquitto with the mTLS listener the header promises ------------------
def _stack() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())
    return loaded


def _script_default(name: str) -> str:
    found = re.search(rf"^{name}=\$\{{{name}:-([^}}]*)\}}", (COMPOSE / "broker.sh").read_text(),
                      re.MULTILINE)
    assert found is not None, f"broker.sh sets no default for {name}"
    return found.group(1)


def test_the_mtls_listener_is_served_and_published() -> None:
    """The header promises :8883 with node certificates: the broker service serves it in the
    cloud's network namespace, the cloud publishes it and tells nodes about it, and the
    bridge logs in on the broker's loopback password listener."""
    stack = _stack()
    cloud, broker = stack["services"]["cloud"], stack["services"]["broker"]
    assert broker["network_mode"] == "service:cloud"
    assert "ports" not in broker  # a service in another's namespace publishes through it
    env = broker["environment"]
    assert env["TLS_PORT"] == _script_default("TLS_PORT") == "8883"
    assert f"{env['TLS_PORT']}:{env['TLS_PORT']}" in cloud["ports"]
    assert not any(port.endswith(f":{env['BRIDGE_PORT']}") for port in cloud["ports"])
    assert f"--mqtt-url=mqtt://127.0.0.1:{env['BRIDGE_PORT']}" in cloud["command"]
    assert cloud["environment"]["TETHER_CLOUD_ADVERTISED_MQTTS_URL"].endswith(
        f":{env['TLS_PORT']}}}")
    assert env["DATA"] == "/var/lib/tether" and "cloud-data:/var/lib/tether" in broker["volumes"]
    assert "--data-dir=/var/lib/tether" in cloud["command"]
    assert env["API"] == "http://127.0.0.1:9080" and "9080:9080" in cloud["ports"]
    assert broker["depends_on"]["cloud"]["condition"] == "service_healthy"
    assert "/healthz" in " ".join(cloud["healthcheck"]["test"])
    # the image carries the script where the service runs it, and Mosquitto
    dockerfile = (COMPOSE / "Dockerfile").read_text()
    assert f"COPY compose/broker.sh {broker['entrypoint'][-1]}" in dockerfile
    assert "install -y --no-install-recommends mosquitto" in dockerfile
    assert stack["services"]["broker"]["image"] == cloud["image"]


def test_broker_script_is_valid_sh() -> None:
    for shell in ("sh", "bash"):
        checked = subprocess.run([shell, "-n", str(COMPOSE / "broker.sh")], capture_output=True,
                                 text=True, check=False)
        assert checked.returncode == 0, checked.stderr
    if shutil.which("shellcheck"):
        checked = subprocess.run(["shellcheck", "-s", "sh", str(COMPOSE / "broker.sh")],
                                 capture_output=True, text=True, check=False)
        assert checked.returncode == 0, checked.stdout


def test_the_readmes_agree_on_the_ports() -> None:
    readme = " ".join((COMPOSE / "README.md").read_text().split())
    for promise in (":9080", ":8883", "mTLS", "broker.sh", "network namespace"):
        assert promise in readme, f"compose/README.md does not say {promise!r}"
    main = (COMPOSE.parent / "README.md").read_text()
    assert "compose/docker-compose.yml" in main and "deploy/kubernetes" in main


@pytest.mark.mosquitto
def test_the_broker_script_serves_mtls_and_refuses_revoked_nodes(tmp_path: Path) -> None:
    """compose/broker.sh as the broker service runs it (root, Mosquitto dropping to its own
    user), on free ports against a real cloud: the bridge logs in with its password, a
    node's certificate is accepted, and refused once revoked (crl-sync reloads Mosquitto)."""
    from cloud_api.runtime import Cloud
    from cloud_api.settings import CloudSettings
    from tests.broker.mosquitto_users import mosquitto_account, reachable_dir
    from tests.broker.test_mosquitto_as_its_user import connects, owner_of
    from tests.broker.tls_clients import certified_node
    from tests.cloud_api.conftest import serving
    from tests.conftest import free_port

    account = mosquitto_account()
    if shutil.which("mosquitto_passwd") is None:
        pytest.skip("mosquitto_passwd is not installed (apt-get install mosquitto-clients)")
    tls_port, bridge_port = free_port(), free_port()
    data = tmp_path / "cloud"
    settings = CloudSettings(
        data_dir=data, database_url=f"sqlite:///{tmp_path / 'c.db'}",
        mqtt_url=f"mqtt://127.0.0.1:{bridge_port}",
        advertised_mqtts_url=f"mqtts://127.0.0.1:{tls_port}",
    )
    with Cloud(settings) as cloud, serving(cloud.app) as api, reachable_dir() as public:
        a, b = certified_node(cloud, "a", tmp_path), certified_node(cloud, "b", tmp_path)
        env = {**os.environ, "DATA": str(data), "API": api, "CONF": str(public / "conf"),
               "RUN": str(public / "run"), "TLS_PORT": str(tls_port),
               "BRIDGE_PORT": str(bridge_port), "BROKER_HOSTS": "localhost,127.0.0.1",
               "CRL_INTERVAL": "0.2",
               "PATH": os.pathsep.join([str(Path(sys.executable).parent),
                                        os.environ.get("PATH", ""), "/usr/sbin"])}
        output = tmp_path / "broker.out"
        with output.open("wb") as sink:
            broker = subprocess.Popen(["sh", str(COMPOSE / "broker.sh")], env=env, stdout=sink,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        try:
            tls = cloud.issue_server_certificate(data / "broker-tls")  # what the script issued
            deadline = time.monotonic() + 30
            while not connects(tls_port, tls, b):
                assert broker.poll() is None, output.read_text()
                assert time.monotonic() < deadline, "the mTLS listener never accepted node b"
                time.sleep(0.1)
            assert owner_of(broker.pid) == account.uid  # exec'd Mosquitto, as its own user
            assert cloud.start_bridge().wait_ready(10)  # the password listener, on loopback
            assert connects(tls_port, tls, a)
            cloud.revoke_node("a")
            deadline = time.monotonic() + 15
            while connects(tls_port, tls, a):
                assert time.monotonic() < deadline, "mosquitto kept accepting the revoked node"
                time.sleep(0.1)
            assert connects(tls_port, tls, b)
        finally:
            os.killpg(broker.pid, signal.SIGTERM)
            broker.wait(timeout=10)
