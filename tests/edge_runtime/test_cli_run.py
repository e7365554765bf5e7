"""``tether edge run`` as a real process: it syncs, stops cleanly on SIGTERM (offline
status published by itself) and, killed with SIGKILL, is marked offline by its will."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from edge_runtime.cli import app
from edge_runtime.identity import Identity
from schemas.topics import TopicScheme
from tests.edge_runtime.mqttcloud import MqttCloud, wipe_session

ROOT = Path(__file__).parents[2]
NS = "default"


def spawn(data_dir: Path, topics: TopicScheme) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TETHER_EDGE_TOPIC_ROOT": topics.root}
    command = [sys.executable, "-m", "edge_runtime", "run", "--data-dir", str(data_dir)]
    return subprocess.Popen(command, cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.mark.mosquitto
def test_run_syncs_then_stops_cleanly_or_dies_with_a_will(
    cloud: MqttCloud, mosquitto_url: str, tmp_path: Path, unique_name: str,
    write_identity: Callable[..., Identity],
) -> None:
    def status() -> object:
        last = cloud.last_status(NS, unique_name)
        return last and last["online"]

    identity = write_identity(tmp_path, mosquitto_url, NS, unique_name)
    cloud.set_desired(NS, unique_name, {"properties": {"fan": "on"}})
    with spawn(tmp_path, cloud.topics) as agent:
        cloud.wait_for(lambda: cloud.document(NS, unique_name).reported.get("properties")
                       == {"fan": "on"}, timeout=10, what="the process's first report")
        time.sleep(0.3)  # idle
        rss_mib = psutil.Process(agent.pid).memory_info().rss / 2**20
        print(f"idle RSS of `tether edge run`: {rss_mib:.1f} MiB")
        assert rss_mib < 120
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=10) == 0
        assert agent.stderr is not None and b"Traceback" not in agent.stderr.read()
    cloud.wait_for(lambda: status() is False, what="the clean offline status")

    with spawn(tmp_path, cloud.topics) as agent:
        cloud.wait_for(lambda: status() is True, timeout=10, what="online again")
        agent.kill()
        agent.wait(timeout=5)
    cloud.wait_for(lambda: status() is False, what="the will of the killed process")
    wipe_session(mosquitto_url, identity.client_id)


def test_run_without_identity_fails_with_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["run", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.strip() == (
        "error: this node is not activated: run `tether edge activate --cloud URL --token T`"
    )
