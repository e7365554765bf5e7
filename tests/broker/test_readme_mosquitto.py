"""The README's "Mosquitto for Tether" block, run as written with bash.

Only the variables at its top are set (to a temporary data dir, free ports and
directories the ``mosquitto`` user can reach), as the README says to. Then: Mosquitto,
started as root by the block, runs as ``mosquitto``; the cloud's bridge logs in on the
password listener; a node's certificate is accepted, and refused once revoked.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from broker.cli import app
from cloud_api.runtime import Cloud
from cloud_api.settings import CloudSettings
from tests.broker.mosquitto_users import mosquitto_account, reachable_dir
from tests.broker.test_mosquitto_as_its_user import connects, owner_of
from tests.broker.tls_clients import certified_node
from tests.cloud_api.conftest import admin_token, serving
from tests.conftest import free_port

README = Path(__file__).resolve().parents[2] / "README.md"
FIRST_LINE = "# Mosquitto for Tether (tests/broker/test_readme_mosquitto.py runs this block as written)"

pytestmark = pytest.mark.mosquitto


def readme_block() -> str:
    """The ```sh block that opens with FIRST_LINE."""
    for block in re.findall(r"```sh\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL):
        if block.startswith(FIRST_LINE + "\n"):
            return str(block)
    raise AssertionError(f"README.md has no sh block opening with {FIRST_LINE!r}")


def test_the_block_sets_only_the_variables_it_documents() -> None:
    block = readme_block()
    assigned = re.findall(r"^([A-Z_]+)=\$\{\1:-", block, re.MULTILINE)
    assert assigned == ["DATA", "API", "CONF", "RUN", "TLS_PORT", "BRIDGE_PORT"]


@pytest.fixture
def daemons() -> Iterator[list[int]]:
    """Pids of the daemons the test started (not our children); each gets SIGTERM at the end."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)


def _alive(pid: int) -> bool:
    """Running (a zombie whose parent does not reap it counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def test_the_readme_mosquitto_block_runs_as_written(tmp_path: Path, daemons: list[int]) -> None:
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
        conf, run = public / "conf", public / "run"
        env = {**os.environ, "DATA": str(data), "API": api, "CONF": str(conf), "RUN": str(run),
               "TLS_PORT": str(tls_port), "BRIDGE_PORT": str(bridge_port),
               "PATH": os.pathsep.join([str(Path(sys.executable).parent),
                                        os.environ.get("PATH", ""), "/usr/sbin"])}
        ran = subprocess.run(["bash", "-euo", "pipefail", "-c", readme_block()], env=env,
                             capture_output=True, text=True, timeout=120, check=False)
        if (run / "tether.pid").exists():
            daemons.append(int((run / "tether.pid").read_text()))
        assert ran.returncode == 0, f"the README block failed:\n{ran.stdout}\n{ran.stderr}"
        pid = daemons[0]
        assert owner_of(pid) == account.uid  # started as root, it runs as mosquitto
        assert cloud.start_bridge().wait_ready(10)  # the password file, read by mosquitto
        tls = cloud.issue_server_certificate(data / "broker-tls")  # what the block issued
        assert connects(tls_port, tls, a) and connects(tls_port, tls, b)
        cloud.revoke_node("a")
        synced = CliRunner().invoke(app, [
            "crl-sync", "--once", "--server", api, "--token", admin_token(cloud),
            "--out", str(conf / "crl.pem"), "--mosquitto-pid-file", str(run / "tether.pid")])
        assert f"reloaded mosquitto (pid {pid})" in synced.stdout, synced.output
        deadline = time.monotonic() + 15
        while connects(tls_port, tls, a):
            assert time.monotonic() < deadline, "mosquitto kept accepting the revoked node"
            time.sleep(0.05)
        assert connects(tls_port, tls, b)
