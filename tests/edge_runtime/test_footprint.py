"""What ``tether edge run`` costs when idle, per backend, and how it fails without a cluster.

The native figure is a target (<= 60 MiB resident); the kube one is measured against the
fake API server (``tests/fake_kube``) through a kubeconfig, as a kube node would run. The
numbers are printed (``pytest -s``) for the record.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from typer.testing import CliRunner

from edge_runtime.cli import app
from edge_runtime.identity import Identity
from schemas.topics import TopicScheme
from tests.edge_runtime.mqttcloud import MqttCloud, wipe_session
from tests.edge_runtime.nativeprocs import kill_leftovers

ROOT = Path(__file__).parents[2]
NS = "default"
NATIVE_TARGET_MIB = 60


@pytest.fixture
def idle_rss(
    cloud: MqttCloud, mosquitto_url: str, tmp_path: Path, unique_name: str,
    write_identity: Callable[..., Identity], topic_scheme: TopicScheme,
) -> Iterator[Callable[..., float]]:
    """Run the agent as a process until it reported, let it idle, return its RSS in MiB."""
    identity = write_identity(tmp_path / "edge", mosquitto_url, NS, unique_name)
    processes: list[subprocess.Popen[bytes]] = []

    def measure(*args: str, env: dict[str, str] | None = None, facts: str = "hostname") -> float:
        command = [sys.executable, "-m", "edge_runtime", "run",
                   "--data-dir", str(tmp_path / "edge"), *args]
        environment = {**os.environ, "TETHER_EDGE_TOPIC_ROOT": topic_scheme.root, **(env or {})}
        process = subprocess.Popen(command, cwd=ROOT, env=environment,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        processes.append(process)
        cloud.wait_for(lambda: facts in cloud.document(NS, unique_name).reported.get("node", {}),
                       timeout=15, what="the agent's first report")
        time.sleep(1.0)  # idle: connected, synced, nothing to do
        assert process.poll() is None
        return float(psutil.Process(process.pid).memory_info().rss / 2**20)

    yield measure
    for process in processes:
        process.terminate()
        process.wait(10)
    kill_leftovers(tmp_path / "edge")
    wipe_session(mosquitto_url, identity.client_id)


@pytest.mark.mosquitto
def test_idle_native_agent_stays_under_its_memory_target(idle_rss: Callable[..., float]) -> None:
    rss = idle_rss("--backend", "native")
    print(f"\nidle RSS of `tether edge run --backend native`: {rss:.1f} MiB")
    assert rss <= NATIVE_TARGET_MIB


@pytest.mark.mosquitto
def test_idle_kube_agent_memory_against_the_fake_api_server(
    idle_rss: Callable[..., float], tmp_path: Path,
) -> None:
    pytest.importorskip("edge_runtime.backends.kube", reason="the kube backend is not there yet")
    from tests.fake_kube import FakeKube

    with FakeKube() as fake:
        config = fake.write_kubeconfig(tmp_path / "kubeconfig")
        env = {"KUBECONFIG": str(config), "NO_PROXY": "127.0.0.1,localhost", "HOME": str(tmp_path)}
        rss = idle_rss("--backend", "kube", env=env, facts="kubernetesVersion")
    print(f"\nidle RSS of `tether edge run --backend kube`: {rss:.1f} MiB")
    assert rss <= 2 * NATIVE_TARGET_MIB


def test_kube_without_a_cluster_is_a_one_line_error(
    tmp_path: Path, write_identity: Callable[..., Identity], monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_identity(tmp_path, "mqtt://127.0.0.1:9", NS, "kube-node")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    result = CliRunner().invoke(app, ["run", "--data-dir", str(tmp_path), "--backend", "kube"])
    lines: Any = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert lines[0].startswith("error: ") and ("kube" in lines[0].lower())
