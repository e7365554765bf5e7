"""Revocation for Mosquitto: ``crlfile`` in the generated configuration, ``tether broker
crl-sync`` against a real cloud, and a real ``mosquitto`` refusing a revoked node.

The Mosquitto tests also pin down what the docs say about it: the CRL file is read at
start and again on SIGHUP, not in between. Skipped where no mosquitto binary is installed.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from typer.testing import CliRunner, Result

from broker.cli import app
from broker.crl_sync import needs_update, reload_mosquitto
from broker.mosquitto import MosquittoConfig, render_config
from cloud_api.runtime import Cloud
from cloud_api.security.pki import CertificateAuthority
from cloud_api.security.server_certificates import ServerFiles
from launcher.mosquitto import mosquitto_binary, running_mosquitto
from tests.broker.mosquitto_users import as_ourselves
from tests.broker.tls_clients import ClientFiles, Pki, TlsProbe, certified_node, client_context
from tests.cloud_api.conftest import admin_token, serving
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


# -- the configuration ------------------------------------------------------------------
def test_the_tls_listener_checks_the_crl_file_when_one_is_given(tmp_path: Path) -> None:
    files = {name: tmp_path / name for name in ("acl", "ca", "crt", "key")}
    base = MosquittoConfig(acl_file=files["acl"], cafile=files["ca"], certfile=files["crt"],
                           keyfile=files["key"], password_port=1884, password_file=tmp_path / "pw")
    assert "crlfile" not in render_config(base)
    lines = render_config(MosquittoConfig(**{**base.__dict__, "crl_file": tmp_path / "c.pem"})).splitlines()
    tls, password = lines.index("listener 8883 0.0.0.0"), lines.index("listener 1884 127.0.0.1")
    assert tls < lines.index(f"crlfile {tmp_path / 'c.pem'}") < password  # on the TLS listener
    with pytest.raises(ValueError, match="newlines"):
        MosquittoConfig(**{**base.__dict__, "crl_file": Path("a\ncrlfile /x")})
    pki = Pki.create(tmp_path / "pki")
    result = CliRunner().invoke(app, [
        "mosquitto-config", "--output", str(tmp_path / "out"), "--cafile", str(pki.cafile),
        "--certfile", str(pki.certfile), "--keyfile", str(pki.keyfile), "--crl-file", "crl.pem",
        *as_ourselves()])
    assert result.exit_code == 0, result.output
    assert f"crlfile {Path('crl.pem').resolve()}" in (tmp_path / "out" / "mosquitto.conf").read_text()


# -- crl-sync against a real cloud ------------------------------------------------------
@pytest.fixture
def cloud(certifying_cloud: Cloud) -> Cloud:
    return certifying_cloud


@pytest.fixture
def cloud_url(cloud: Cloud) -> Iterator[str]:
    with serving(cloud.app) as url:
        yield url


def listed(path: Path) -> set[str]:
    return {format(entry.serial_number, "x") for entry in x509.load_pem_x509_crl(path.read_bytes())}


def sync(url: str, token: str, out: Path, *extra: str) -> Result:
    env = {"TETHER_BROKER_SERVER": url, "TETHER_BROKER_AUTH_TOKEN": token}
    return CliRunner().invoke(app, ["crl-sync", "--once", "--out", str(out), *extra], env=env)


@pytest.fixture
def hup_counter(tmp_path: Path) -> Iterator[tuple[Path, Callable[[], int]]]:
    """A stand-in for Mosquitto: a process that counts its SIGHUPs; (pid file, count)."""
    marker = tmp_path / "hups"
    child = subprocess.Popen(
        [sys.executable, "-c",
         ("import signal, sys, time\n"
          "signal.signal(signal.SIGHUP, lambda *_: open(sys.argv[1], 'a').write('hup\\n'))\n"
          "print('ready', flush=True)\n"
          "time.sleep(120)\n"), str(marker)],
        stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline() == "ready\n"
    pid_file = tmp_path / "mosquitto.pid"
    pid_file.write_text(f"{child.pid}\n")

    def count() -> int:
        deadline = time.monotonic() + 1.0  # a signal is delivered asynchronously
        seen = marker.read_text().count("hup") if marker.exists() else 0
        while time.monotonic() < deadline:
            time.sleep(0.05)
            seen = marker.read_text().count("hup") if marker.exists() else 0
        return seen

    try:
        yield pid_file, count
    finally:
        child.kill()
        child.wait()
        child.stdout.close()


def test_crl_sync_writes_the_crl_and_signals_only_when_it_changed(
    cloud: Cloud, cloud_url: str, tmp_path: Path, hup_counter: tuple[Path, Callable[[], int]]
) -> None:
    pid_file, hups = hup_counter
    a, b = certified_node(cloud, "a", tmp_path), certified_node(cloud, "b", tmp_path)
    out, token = tmp_path / "crl.pem", admin_token(cloud)
    old_umask = os.umask(0o077)
    try:
        first = sync(cloud_url, token, out, "--mosquitto-pid-file", str(pid_file))
    finally:
        os.umask(old_umask)
    assert first.exit_code == 0, first.output
    assert f"wrote {out} (0 revoked); reloaded mosquitto" in first.stdout
    assert listed(out) == set() and stat.S_IMODE(out.stat().st_mode) == 0o644 and hups() == 1
    inode = out.stat().st_ino
    again = sync(cloud_url, token, out, "--mosquitto-pid-file", str(pid_file))
    assert again.exit_code == 0 and "is current (0 revoked)" in again.stdout
    assert out.stat().st_ino == inode and hups() == 1  # same serials: untouched, no reload
    cloud.revoke_node("a")
    third = sync(cloud_url, token, out, "--mosquitto-pid-file", str(pid_file), "--cafile",
                 str(tmp_path / "cloud" / "ca" / "ca.crt"))
    assert third.exit_code == 0, third.output
    assert listed(out) == {a.serial} and b.serial not in listed(out) and hups() == 2
    assert out.stat().st_ino != inode  # replaced by rename, never written in place
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".crl.pem")] == []


@pytest.mark.parametrize("case", ["no token", "wrong token", "unreachable", "unwritable",
                                  "another CA", "pid file of garbage"])
def test_crl_sync_failures_are_one_line_and_keep_the_last_good_crl(
    cloud: Cloud, cloud_url: str, tmp_path: Path, case: str
) -> None:
    out, token, url = tmp_path / "crl.pem", admin_token(cloud), cloud_url
    good = b"last good\n"
    out.write_bytes(good)
    extra: list[str] = []
    if case == "no token":
        result = CliRunner().invoke(app, ["crl-sync", "--once", "--out", str(out), "--server", url],
                                    env={"TETHER_BROKER_AUTH_TOKEN": None})
    else:
        if case == "wrong token":
            token = "wrong"
        elif case == "unreachable":
            url = f"http://127.0.0.1:{free_port()}"
        elif case == "unwritable":
            out = tmp_path / "no-such-dir" / "crl.pem"
        elif case == "another CA":
            other = tmp_path / "other.crt"
            other.write_text(CertificateAuthority.create(common_name="Tether CA").certificate_pem)
            extra = ["--cafile", str(other)]
        else:
            (tmp_path / "pid").write_text("not a pid")
            extra = ["--mosquitto-pid-file", str(tmp_path / "pid")]
        result = sync(url, token, out, *extra)
    hint = {"no token": "--token is required", "wrong token": "401", "unreachable": "no answer from",
            "unwritable": "cannot write", "another CA": "not signed by the CA of --cafile",
            "pid file of garbage": "does not hold a process id"}[case]
    assert result.exit_code != 0 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and hint in result.stderr, result.stderr
    if case != "pid file of garbage":  # there the CRL was written, then the signal failed
        assert (tmp_path / "crl.pem").read_bytes() == good


def test_crl_sync_trusts_an_api_certificate_of_the_cloud_ca_given_with_cafile(
    cloud: Cloud, tmp_path: Path
) -> None:
    """``tether cloud serve --tls-generate`` serves a certificate of the cloud's own CA."""
    tls = cloud.issue_server_certificate(tmp_path / "api-tls", common_name="tether-api")
    out = tmp_path / "crl.pem"
    with serving(cloud.app, tls=(tls.certfile, tls.keyfile)) as url:
        untrusted = sync(url, admin_token(cloud), out)
        assert untrusted.exit_code == 1 and "pass the cloud's CA with --cafile" in untrusted.stderr
        assert len(untrusted.stderr.splitlines()) == 1 and not out.exists()
        trusted = sync(url, admin_token(cloud), out, "--cafile", str(tls.cafile))
        assert trusted.exit_code == 0, trusted.stderr
    assert listed(out) == set()


def test_a_stopped_mosquitto_is_not_an_error(cloud: Cloud, cloud_url: str, tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "pid").write_text(str(dead.pid))
    for pid_file in (tmp_path / "pid", tmp_path / "absent.pid"):
        (tmp_path / "crl.pem").unlink(missing_ok=True)
        result = sync(cloud_url, admin_token(cloud), tmp_path / "crl.pem", "--mosquitto-pid-file",
                      str(pid_file))
        assert result.exit_code == 0 and "reads" in result.stderr and "when it starts" in result.stderr


class Flaky:
    """An ASGI app that answers 503 while ``down``, else passes to the cloud's app."""

    def __init__(self, target: Any) -> None:
        self.target, self.down = target, False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.down and scope["type"] == "http":
            await send({"type": "http.response.start", "status": 503, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await self.target(scope, receive, send)


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_interval_mode_rides_out_a_failing_cloud(cloud: Cloud, tmp_path: Path) -> None:
    a = certified_node(cloud, "a", tmp_path)
    flaky, out, log = Flaky(cloud.app), tmp_path / "crl.pem", tmp_path / "stderr.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_BROKER_")}
    env["TETHER_BROKER_AUTH_TOKEN"] = admin_token(cloud)
    with serving(flaky) as url, log.open("w") as stderr:  # type: ignore[arg-type]
        process = subprocess.Popen(
            [sys.executable, "-c", "from broker.cli import app; app()", "crl-sync", "--server", url,
             "--out", str(out), "--interval", "0.2"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            wait_for(out.exists, "the first CRL")
            flaky.down = True
            last_good = out.read_bytes()
            wait_for(lambda: log.read_text().count("503") >= 2, "failures to be reported")
            assert process.poll() is None and out.read_bytes() == last_good
            assert "keeping" in log.read_text()
            cloud.revoke_node("a")
            flaky.down = False
            wait_for(lambda: listed(out) == {a.serial}, "the CRL with the revocation")
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=10) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def test_needs_update_compares_serials_and_freshness() -> None:
    ca = CertificateAuthority.create()
    now = dt.datetime.now(dt.UTC)
    empty, one = ca.revocation_list([]).encode(), ca.revocation_list([(7, 1)]).encode()
    assert needs_update(None, empty, now=now) and needs_update(b"garbage", empty, now=now)
    assert not needs_update(empty, ca.revocation_list([]).encode(), now=now)  # new bytes, same list
    assert needs_update(empty, one, now=now) and needs_update(one, empty, now=now)
    assert needs_update(empty, CertificateAuthority.create().revocation_list([]).encode(), now=now)
    assert needs_update(empty, empty, now=now + dt.timedelta(days=4))  # past half of 7 days


# -- a real Mosquitto -------------------------------------------------------------------
def connects(port: int, tls: ServerFiles, node: ClientFiles) -> bool:
    probe = TlsProbe(port, client_context(tls.cafile, node))
    try:
        code = probe.connect()
        return code is not None and not code.is_failure
    finally:
        probe.close()


@pytest.mark.mosquitto
def test_mosquitto_refuses_a_revoked_node_after_crl_sync_reloads_it(
    cloud: Cloud, cloud_url: str, tmp_path: Path
) -> None:
    if mosquitto_binary() is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    tls = cloud.issue_server_certificate(tmp_path / "tls")
    a, b = certified_node(cloud, "a", tmp_path), certified_node(cloud, "b", tmp_path)
    token, crl, pid_file = admin_token(cloud), tmp_path / "crl.pem", tmp_path / "mosquitto.pid"
    assert sync(cloud_url, token, crl).exit_code == 0  # the file must exist before mosquitto starts
    port, conf = free_port(), tmp_path / "conf"
    result = CliRunner().invoke(app, [
        "mosquitto-config", "--output", str(conf), "--cafile", str(tls.cafile),
        "--certfile", str(tls.certfile), "--keyfile", str(tls.keyfile), "--crl-file", str(crl),
        "--tls-port", str(port), "--tls-host", "127.0.0.1",
        *as_ourselves(),  # our tmp dir is private: Mosquitto runs as us
    ])
    assert result.exit_code == 0, result.output
    with running_mosquitto(conf / "mosquitto.conf", port) as mosquitto:
        pid_file.write_text(f"{mosquitto.pid}\n")
        assert connects(port, tls, a) and connects(port, tls, b)
        cloud.revoke_node("a")
        assert sync(cloud_url, token, crl).exit_code == 0  # written, Mosquitto not told
        assert a.serial in listed(crl)
        assert connects(port, tls, a)  # Mosquitto read the file at start only...
        assert reload_mosquitto(pid_file) == mosquitto.pid  # ...and again on SIGHUP
        wait_for(lambda: not connects(port, tls, a), "mosquitto to refuse the revoked node")
        assert connects(port, tls, b)
        cloud.revoke_node("b")
        synced = sync(cloud_url, token, crl, "--mosquitto-pid-file", str(pid_file))
        assert synced.exit_code == 0 and f"reloaded mosquitto (pid {mosquitto.pid})" in synced.stdout
        wait_for(lambda: not connects(port, tls, b), "mosquitto to refuse the second node")
        assert mosquitto.poll() is None
