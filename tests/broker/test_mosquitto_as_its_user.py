"""A real Mosquitto started as the ``mosquitto`` user with ``tether broker mosquitto-config``'s
configuration: it starts, accepts a node's certificate, and refuses a revoked one after
``crl-sync`` reloads it, though the cloud keeps its CA and keys in 0700 directories.

Skipped (with the reason) where mosquitto or its user is missing, or the tests are not
root (only root can start a process as another user).
"""

from __future__ import annotations

import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from broker.cli import app
from broker.mosquitto import MosquittoConfig, render_config
from cloud_api.runtime import Cloud
from cloud_api.security.server_certificates import ServerFiles
from tests.broker.mosquitto_users import mosquitto_account, reachable_dir, running_as
from tests.broker.tls_clients import ClientFiles, TlsProbe, certified_node, client_context
from tests.cloud_api.conftest import admin_token, serving
from tests.conftest import free_port

pytestmark = pytest.mark.mosquitto


@pytest.fixture
def cloud_url(certifying_cloud: Cloud) -> Iterator[str]:
    with serving(certifying_cloud.app) as url:
        yield url


def connects(port: int, tls: ServerFiles, node: ClientFiles) -> bool:
    probe = TlsProbe(port, client_context(tls.cafile, node))
    try:
        code = probe.connect()
        return code is not None and not code.is_failure
    finally:
        probe.close()


def crl_sync(url: str, token: str, out: Path, *extra: str) -> Result:
    env = {"TETHER_BROKER_SERVER": url, "TETHER_BROKER_AUTH_TOKEN": token}
    return CliRunner().invoke(app, ["crl-sync", "--once", "--out", str(out), *extra], env=env)


def owner_of(pid: int) -> int:
    """The real uid of process ``pid``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for {pid}")


def test_the_cloud_files_as_they_are_are_what_mosquitto_refused(
    certifying_cloud: Cloud, tmp_path: Path
) -> None:
    """The failure this fixes: a configuration naming the cloud's own files."""
    account = mosquitto_account()
    tls = certifying_cloud.issue_server_certificate(tmp_path / "cloud" / "broker-tls")
    port = free_port()
    with reachable_dir() as public:
        config = public / "mosquitto.conf"
        config.write_text(render_config(MosquittoConfig(
            acl_file=public / "acl", cafile=tls.cafile, certfile=tls.certfile,
            keyfile=tls.keyfile, tls_port=port, tls_host="127.0.0.1")))
        (public / "acl").write_text("")
        for path in (config, public / "acl"):
            path.chmod(0o644)
        with pytest.raises(RuntimeError, match="Permission denied"), running_as(account, config, port):
            pass


def test_mosquitto_as_its_user_accepts_a_node_and_refuses_a_revoked_one(
    certifying_cloud: Cloud, cloud_url: str, tmp_path: Path
) -> None:
    account = mosquitto_account()
    cloud = certifying_cloud
    data = tmp_path / "cloud"
    tls = cloud.issue_server_certificate(data / "broker-tls")  # 0700, as the cloud keeps it
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    a, b = certified_node(cloud, "a", tmp_path), certified_node(cloud, "b", tmp_path)
    token, port = admin_token(cloud), free_port()
    with reachable_dir() as public:
        conf, crl, pid_file = public / "conf", public / "conf" / "crl.pem", public / "run" / "m.pid"
        result = CliRunner().invoke(app, [
            "mosquitto-config", "--output", str(conf), "--cafile", str(tls.cafile),
            "--certfile", str(tls.certfile), "--keyfile", str(tls.keyfile),
            "--tls-port", str(port), "--tls-host", "127.0.0.1",
            "--crl-file", str(crl), "--pid-file", str(pid_file),
        ])  # no --user: the configuration is for the mosquitto user
        assert result.exit_code == 0, result.output
        assert crl_sync(cloud_url, token, crl).exit_code == 0  # before mosquitto starts
        with running_as(account, conf / "mosquitto.conf", port) as mosquitto:
            assert owner_of(mosquitto.pid) == account.uid
            assert pid_file.read_text().strip() == str(mosquitto.pid)  # written as mosquitto
            assert connects(port, tls, a) and connects(port, tls, b)
            cloud.revoke_node("a")
            synced = crl_sync(cloud_url, token, crl, "--mosquitto-pid-file", str(pid_file))
            assert f"reloaded mosquitto (pid {mosquitto.pid})" in synced.stdout, synced.output
            deadline = time.monotonic() + 15  # SIGHUP: the CRL re-read as the mosquitto user
            while connects(port, tls, a):
                assert time.monotonic() < deadline, "mosquitto kept accepting the revoked node"
                time.sleep(0.05)
            assert connects(port, tls, b) and mosquitto.poll() is None
