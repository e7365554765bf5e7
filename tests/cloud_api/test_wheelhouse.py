"""The wheelhouse: the wheels of Tether's dependencies, built once by the operator
(``tether cloud wheelhouse build``, which needs a package index on the cloud's side) and
served so that ``install.sh`` installs a node with no index at all.

The end-to-end test runs the install script the cloud serves, as root, in a mount
namespace whose /etc/systemd/system is a private tmpfs (the machine's is never touched),
with a ``systemctl`` that only records what it is asked, ``PIP_NO_INDEX=1`` and a fresh
venv: pip gets every dependency from the cloud, the node activates with a CSR, the unit is
written and enabled. The wheelhouse is built once per session.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from cloud_api.packaging import WHEELHOUSE_DIRNAME, ServedWheelhouse, build_wheelhouse
from cloud_api.runtime import Cloud, bind_http
from cloud_api.services.install import render_install_script
from cloud_api.settings import CloudSettings
from launcher.serving import BackgroundServer
from tests.cloud_api.conftest import admin_token
from tests.conftest import free_port
from tether import build_app

NODES = "/v1/namespaces/default/nodes"


def _index_reachable() -> bool:
    try:
        with socket.create_connection(("pypi.org", 443), timeout=3):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheelhouse built once per session by the real command (the index is needed here)."""
    if os.environ.get("PIP_NO_INDEX") or not _index_reachable():
        pytest.skip("no package index reachable to build the wheelhouse from (pypi.org:443)")
    data = tmp_path_factory.mktemp("wheelhouse-cloud")
    started = time.monotonic()
    built = CliRunner().invoke(build_app("cloud"), ["cloud", "wheelhouse", "build",
                                                    "--data-dir", str(data)])
    assert built.exit_code == 0, built.output
    print(f"wheelhouse built in {time.monotonic() - started:.1f} s: {built.output.strip()}")
    return data / WHEELHOUSE_DIRNAME


def test_the_wheelhouse_pins_what_the_cloud_runs(wheelhouse: Path) -> None:
    import importlib.metadata

    names = {path.name for path in wheelhouse.iterdir()}
    assert not any(name.startswith("tether-") for name in names)  # served from its own URL
    for dependency in ("paho_mqtt", "fastapi", "cryptography", "tinydb", "psutil"):
        version = importlib.metadata.version(dependency.replace("_", "-"))
        assert any(n.lower().startswith(f"{dependency}-{version}-") for n in names), dependency


def test_a_missing_wheelhouse_is_404_and_the_script_uses_the_index(tmp_path: Path) -> None:
    settings = CloudSettings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'c.db'}")
    assert ServedWheelhouse(settings).names() == []
    with Cloud(settings) as cloud:
        server = BackgroundServer(cloud.app, bind_http("127.0.0.1", 0)).start()
        try:
            page = httpx.get(f"{server.url}/v1/init/wheelhouse/", timeout=10)
            assert page.status_code == 404
            assert "tether cloud wheelhouse build" in page.json()["message"]
        finally:
            server.stop()
    script = render_install_script(public_url="http://c:9080", namespace="default", node="n1",
                                   token="t", package="http://c:9080/v1/init/tether.whl")
    assert "FIND_LINKS=''" in script


def test_the_wheelhouse_is_served_as_find_links(tmp_path: Path) -> None:
    settings = CloudSettings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'c.db'}")
    (tmp_path / WHEELHOUSE_DIRNAME).mkdir()
    (tmp_path / WHEELHOUSE_DIRNAME / "a_b-1.0-py3-none-any.whl").write_bytes(b"wheel")
    (tmp_path / "secret.key").write_text("not served\n")
    with Cloud(settings) as cloud:
        server = BackgroundServer(cloud.app, bind_http("127.0.0.1", 0)).start()
        try:
            base = f"{server.url}/v1/init/wheelhouse/"
            page = httpx.get(base, timeout=10)
            assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
            assert '<a href="a_b-1.0-py3-none-any.whl">' in page.text
            assert httpx.get(base + "a_b-1.0-py3-none-any.whl", timeout=10).content == b"wheel"
            for name in ("nope-1.0-py3-none-any.whl", "..%2Fsecret.key", "%2E%2E%2Fsecret.key"):
                assert httpx.get(base + name, timeout=10).status_code == 404, name
        finally:
            server.stop()


def test_build_failure_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No index on the cloud either: one line that says what pip needs."""
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    settings = CloudSettings(data_dir=tmp_path / "d", database_url=f"sqlite:///{tmp_path / 'c.db'}")
    from cloud_api.errors import ConfigError

    with pytest.raises(ConfigError, match="it needs a package index once, on the cloud"):
        build_wheelhouse(settings)
    assert not (tmp_path / "d" / WHEELHOUSE_DIRNAME).exists()


def test_add_keeps_the_wheels_of_other_platforms(
    wheelhouse: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One wheelhouse for a mixed fleet: ``--add`` keeps what an earlier build for another
    platform left. (Built here from the session's wheelhouse as the only source.)"""
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheelhouse))
    data = tmp_path / "d"
    other = "psutil-7.2.2-cp36-abi3-manylinux2014_aarch64.manylinux_2_17_aarch64.whl"
    (data / WHEELHOUSE_DIRNAME).mkdir(parents=True)
    (data / WHEELHOUSE_DIRNAME / other).write_bytes(b"an aarch64 wheel")
    settings = CloudSettings(data_dir=data, database_url=f"sqlite:///{tmp_path / 'c.db'}")
    names = build_wheelhouse(settings, add=True)
    assert other in names and set(names) - {other} == {p.name for p in wheelhouse.iterdir()}
    assert ServedWheelhouse(settings).names() == names


def _install_problem() -> str | None:
    if os.geteuid() != 0:
        return "install.sh runs as root: this test needs root"
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is missing: no private /etc/systemd/system for the unit"
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        return f"cannot make a mount namespace here: {probe.stderr.decode().strip()}"
    return None


@pytest.mark.slow
@pytest.mark.timeout(600)  # a fresh venv of ~80 wheels: about a minute on an idle machine
def test_install_sh_installs_a_node_with_no_index(wheelhouse: Path, tmp_path: Path) -> None:
    if (problem := _install_problem()) is not None:
        pytest.skip(problem)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = CloudSettings(data_dir=tmp_path / "cloud", public_url=url,
                             database_url=f"sqlite:///{tmp_path / 'cloud.db'}",
                             advertised_mqtts_url=f"mqtts://127.0.0.1:{free_port()}")
    settings.data_dir.mkdir(parents=True)
    (settings.data_dir / WHEELHOUSE_DIRNAME).symlink_to(wheelhouse)
    bin_dir, calls, unit = tmp_path / "bin", tmp_path / "systemctl.calls", tmp_path / "unit"
    bin_dir.mkdir()
    (bin_dir / "systemctl").write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {calls}\n'
        f"cp /etc/systemd/system/tether-edge.service {unit}\n")
    (bin_dir / "systemctl").chmod(0o755)
    (bin_dir / "python3").symlink_to(sys._base_executable)  # the cloud's Python: its wheels
    prefix, node_data = tmp_path / "opt" / "tether", tmp_path / "var" / "edge"
    with Cloud(settings) as cloud:
        server = BackgroundServer(cloud.app, bind_http("127.0.0.1", port)).start()
        try:
            cloud.create_node("n1")
            headers = {"Authorization": f"Bearer {admin_token(cloud)}"}
            init = httpx.get(f"{url}{NODES}/n1/init", params={"mode": "native"},
                             headers=headers, timeout=10).json()
            script = httpx.get(f"{url}/v1/init/install.sh", params={"token": init["token"]},
                               timeout=10).text
            assert f"FIND_LINKS={url}/v1/init/wheelhouse/" in script
            (tmp_path / "install.sh").write_text(script)
            env = {"PATH": f"{bin_dir}:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": str(tmp_path),
                   "PIP_NO_INDEX": "1", "PIP_CONFIG_FILE": os.devnull,
                   "PIP_NO_COMPILE": "1",  # no .pyc at install: time, not what is tested
                   "TETHER_PREFIX": str(prefix), "TETHER_DATA_DIR": str(node_data)}
            started = time.monotonic()
            ran = subprocess.run(
                ["unshare", "-m", "--propagation", "private", "sh", "-c",
                 'mount -t tmpfs tmpfs /etc/systemd/system && exec sh "$0"',
                 str(tmp_path / "install.sh")],
                env=env, capture_output=True, text=True, timeout=300, check=False)
            print(f"install.sh with no index: {time.monotonic() - started:.1f} s")
            assert ran.returncode == 0, f"{ran.stdout}\n{ran.stderr}"
        finally:
            server.stop()
    assert "node default/n1 installed" in ran.stdout
    assert calls.read_text().splitlines() == ["daemon-reload", "enable --now tether-edge.service"]
    assert f"ExecStart={prefix}/bin/tether edge run --backend native --data-dir {node_data}" in (
        unit.read_text())
    assert (node_data / "identity.json").is_file()  # activated: key made here, CSR signed
    version = subprocess.run([str(prefix / "bin" / "python"), "-c",
                              "import edge_runtime, paho.mqtt, tinydb; print('ok')"],
                             capture_output=True, text=True, check=False)
    assert version.stdout.strip() == "ok", version.stderr
    assert not Path("/etc/systemd/system/tether-edge.service").exists()  # the machine's untouched
