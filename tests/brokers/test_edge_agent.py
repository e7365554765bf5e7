"""The real edge agent (``tether edge run``, a child process) on every broker: it connects
with the credentials activation gave it, converges on its desired state, and its will
says when it dies. Slower than the paho-played scenarios (an agent starts in ~2 s)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from cloud_api.runtime import Cloud
from edge_runtime.activation import activate
from launcher.brokers import Capability, RunningBroker
from tests.brokers.conftest import TOPICS, Clouds, Nodes, is_online, wait_for

pytestmark = pytest.mark.slow
BROKER_NEEDS = (Capability.NODE_CREDENTIALS,)


@pytest.fixture
def agent(
    tmp_path: Path, broker: RunningBroker
) -> Iterator[Callable[[str, str], subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def run(api_url: str, token: str) -> subprocess.Popen[bytes]:
        data_dir = tmp_path / "edge"
        activate(api_url, token, data_dir)
        broker.nodes_changed()  # NATS: as `tether broker nats-config` would
        env = {**os.environ, "TETHER_EDGE_TOPIC_ROOT": TOPICS.root}
        with (tmp_path / "edge.log").open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "tether", "edge", "run", "--data-dir", str(data_dir)],
                stdout=log, stderr=subprocess.STDOUT, env=env,
            )
        started.append(process)
        return process

    yield run
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()


def test_the_edge_agent_converges_and_its_will_says_it_died(
    clouds: Clouds, nodes: Nodes, broker: RunningBroker,
    rest: Callable[[Cloud], httpx.Client], agent: Callable[[str, str], subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    cloud = clouds.open()
    api = rest(cloud)
    name = nodes.unique
    cloud.create_node(name)
    token = cloud.issue_activation(name).token
    api_url = str(api.base_url.copy_with(path=""))
    process = agent(api_url.rstrip("/"), token)
    log = tmp_path / "edge.log"
    wait_for(lambda: is_online(cloud, name), timeout=20,
             what=f"the agent online (its log: {log})")
    assert api.patch(f"/nodes/{name}/shadow",
                     json={"state": {"desired": {"properties": {"fan": "on"}}}}).status_code == 200

    def converged() -> bool:
        state = api.get(f"/nodes/{name}/shadow").json()["state"]
        return bool(state["reported"].get("properties") == {"fan": "on"} and not state["delta"])

    wait_for(converged, timeout=15, what="the agent reports what is desired")
    process.send_signal(signal.SIGKILL)
    process.wait()
    wait_for(lambda: not is_online(cloud, name), timeout=15, what="offline by the agent's will")
