"""``tether broker nats-config``: NATS's users from the cloud, rewritten when nodes change.

The rendering, and the sync against a real cloud served on a loopback port; the NATS
side (that NATS enforces the file) is the conformance suite's (``tests/brokers``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
from typer.testing import CliRunner

from broker.cli import app
from broker.nats_auth import NatsConfigError, render, subject_of, sync_once
from cloud_api.runtime import Cloud
from edge_runtime.activation import new_key_and_csr
from tests.cloud_api.conftest import admin_token, serving


@pytest.mark.parametrize(("topic", "subject"), [
    ("tether/v1/default/n1/shadow/get", "tether.v1.default.n1.shadow.get"),
    ("tether/v1/default/n1/#", "tether.v1.default.n1.>"),
    ("tether/v1/default/n1/functions/+/+/result", "tether.v1.default.n1.functions.*.*.result"),
])
def test_mqtt_filters_become_nats_subjects(topic: str, subject: str) -> None:
    assert subject_of(topic) == subject


def test_render_confines_each_node_and_maps_certificates() -> None:
    text = render({
        "topicRoot": "tether/v1",
        "bridge": {"username": "tether-cloud", "passwordHash": "$2b$06$bridge"},
        "users": [{"username": "default/n1", "passwordHash": "$2b$06$n1"},
                  {"username": "default/n2", "certificate": True}],
    })
    assert '{user: "tether-cloud", password: "$2b$06$bridge", permissions: {publish: ">", subscribe: ">"}}' in text
    n1 = next(line for line in text.splitlines() if '"default/n1"' in line)
    assert '"tether.v1.default.n1.shadow.update"' in n1 and '"tether.v1.default.n1.>"' in n1
    assert "shadow.update.accepted" not in n1 and "default.n2" not in n1
    assert '{user: "CN=default/n2", permissions: {publish:' in text
    assert '"default/n2", password' not in text
    with pytest.raises(NatsConfigError, match="no user list"):
        render({"users": []})
    with pytest.raises(NatsConfigError, match="no node identity"):
        render({"topicRoot": "t", "bridge": {"username": "b", "passwordHash": "h"},
                "users": [{"username": "a/b/c", "passwordHash": "h"}]})


@pytest.fixture
def served(certifying_cloud: Cloud) -> Iterator[str]:
    with serving(certifying_cloud.app) as url:
        yield url


def test_sync_writes_hashes_never_passwords_and_follows_revocation(
    certifying_cloud: Cloud, served: str, tmp_path: Path
) -> None:
    cloud = certifying_cloud
    cloud.create_node("p1")
    password = cloud.activate(cloud.issue_activation("p1").token).mqtt.password
    assert password is not None
    cloud.create_node("c1")
    _, csr = new_key_and_csr("default/c1")
    cloud.activate(cloud.issue_activation("c1").token, csr=csr)
    out = tmp_path / "tether-users.conf"
    pid_file = tmp_path / "nats.pid"
    sleeper = subprocess.Popen([sys.executable, "-c", ("import signal, time; "
                                "signal.signal(signal.SIGHUP, lambda *a: print('hup', flush=True)); "
                                "time.sleep(30)")], stdout=subprocess.PIPE, text=True)
    try:
        pid_file.write_text(f"{sleeper.pid}\n")
        time.sleep(0.3)  # the handler is installed
        first = sync_once(served, admin_token(cloud), out, pid_file=pid_file)
        assert (first.written, first.users, first.reloaded_pid) == (True, 2, sleeper.pid)
        text = out.read_text()
        assert password not in text and cloud.bridge_password not in text
        assert oct(out.stat().st_mode & 0o777) == "0o600"
        line = next(line for line in text.splitlines() if '"default/p1"' in line)
        digest = line.split('password: "')[1].split('"')[0]
        assert bcrypt.checkpw(password.encode(), digest.encode())
        assert '"CN=default/c1"' in text
        again = sync_once(served, admin_token(cloud), out, pid_file=pid_file)
        assert (again.written, again.reloaded_pid) == (False, None), "nothing changed, no reload"
        cloud.revoke_node("p1")
        cloud.revoke_node("c1")
        third = sync_once(served, admin_token(cloud), out, pid_file=pid_file)
        assert third.written and third.users == 0
        assert "default/p1" not in out.read_text() and "default/c1" not in out.read_text()
    finally:
        time.sleep(0.3)  # the last SIGHUP handled before the SIGTERM
        sleeper.send_signal(signal.SIGTERM)
        output, _ = sleeper.communicate(timeout=10)
    assert output.count("hup") == 2


def test_the_command_fails_in_one_line(
    certifying_cloud: Cloud, served: str, tmp_path: Path
) -> None:
    cloud = certifying_cloud
    out = tmp_path / "users.conf"
    runner = CliRunner()
    missing = runner.invoke(app, ["nats-config", "--out", str(out), "--once"],
                            env={"TETHER_BROKER_SERVER": "", "TETHER_BROKER_AUTH_TOKEN": ""})
    assert missing.exit_code == 2 and "--server is required" in missing.output
    bad = runner.invoke(app, ["nats-config", "--out", str(out), "--once", "--server", served,
                              "--token", "wrong"])
    assert bad.exit_code == 1 and "refused the token (401)" in bad.output
    good = runner.invoke(app, ["nats-config", "--out", str(out), "--once", "--server", served,
                               "--token", admin_token(cloud)])
    assert good.exit_code == 0 and f"wrote {out} (0 nodes)" in good.output, good.output
    assert os.path.exists(out)
