"""Offline autonomy, the must-show: ``tether edge run`` as a real process, killed with
SIGKILL and restarted while no broker is reachable, keeps its app running -- from the
cache alone when the machine lost its processes, by adopting them when it did not -- and
reports what happened meanwhile once the broker is back."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_runtime.identity import Identity
from schemas.topics import TopicScheme
from tests.edge_runtime.mqttcloud import TcpProxy, wipe_session
from tests.edge_runtime.nativeprocs import kill_leftovers, pid_of, running, wait_for
from tests.edge_runtime.resourcecloud import Catalog, ResourceCloud, native_app

pytestmark = pytest.mark.mosquitto
ROOT = Path(__file__).parents[2]
NS = "default"
BACK_WITHIN = 5.0  # seconds: the app runs again this soon after the agent restarts offline


class Agents:
    """Starts ``python -m edge_runtime run`` on one data dir; kills them all at the end."""

    def __init__(self, data_dir: Path, topics: TopicScheme) -> None:
        self.data_dir, self.log = data_dir, data_dir.parent / "agent.log"
        self.env = {**os.environ, "TETHER_EDGE_TOPIC_ROOT": topics.root,
                    "TETHER_EDGE_RECONNECT_MIN_SECONDS": "0.05",
                    "TETHER_EDGE_RECONNECT_MAX_SECONDS": "0.5",
                    "TETHER_EDGE_RESTART_BACKOFF_SECONDS": "0.2",
                    "TETHER_EDGE_STOP_GRACE_SECONDS": "1"}
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "edge_runtime", "run", "--data-dir", str(self.data_dir)],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.started.append(process)
        return process

    def logged(self, text: str) -> bool:
        return text in self.log.read_text()

    def close(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.terminate()
                process.wait(10)


@pytest.fixture
def proxy(mosquitto_url: str) -> Iterator[TcpProxy]:
    tcp_proxy = TcpProxy(mosquitto_url)
    yield tcp_proxy
    tcp_proxy.close()


@pytest.fixture
def node(
    tmp_path: Path, mosquitto_url: str, proxy: TcpProxy, unique_name: str,
    write_identity: Callable[..., Identity], topic_scheme: TopicScheme,
) -> Iterator[Agents]:
    data_dir = tmp_path / "edge"
    identity = write_identity(data_dir, proxy.url, NS, unique_name)
    agents = Agents(data_dir, topic_scheme)
    yield agents
    agents.close()
    kill_leftovers(data_dir)
    wipe_session(mosquitto_url, identity.client_id)


def test_a_killed_agent_restarted_offline_keeps_its_app_running_and_reports_later(
    rcloud: ResourceCloud, catalog: Catalog, proxy: TcpProxy, node: Agents, unique_name: str,
) -> None:
    def stat() -> Any:
        return rcloud.document(NS, unique_name).reported.get("appstats", {}).get("a", {})

    catalog.add(native_app("a"), "v1")
    rcloud.set_desired(NS, unique_name, {"apps": {"a": "v1"}})
    agent = node.start()
    rcloud.wait_for(lambda: stat().get("status") == "Running", timeout=10, what="app A running")
    first, asked = pid_of(node.data_dir, "a"), len(catalog.requests)

    # The broker goes away, then the machine "reboots": agent and app die, and the
    # backend's own state is lost -- only the cache (desired document + resources) remains.
    proxy.down()
    agent.kill()
    agent.wait(5)
    kill_leftovers(node.data_dir)
    shutil.rmtree(node.data_dir / "apps")
    restarted = time.monotonic()
    agent = node.start()
    second = wait_for(lambda: (p := pid_of(node.data_dir, "a")) and running(p) and p,
                      timeout=BACK_WITHIN, what="app A applied from the cache")
    print(f"app A ran again {time.monotonic() - restarted:.2f} s after an offline restart")
    assert second != first and len(catalog.requests) == asked

    # Killed again: this time its app survives, and the next agent adopts it...
    agent.send_signal(signal.SIGKILL)
    agent.wait(5)
    assert running(second)
    agent = node.start()
    wait_for(lambda: node.logged("1 running processes adopted"), timeout=BACK_WITHIN,
             what="the new agent adopting app A")
    assert pid_of(node.data_dir, "a") == second and running(second)  # not restarted
    # ... and supervises it: killed, it is restarted by the new agent.
    os.killpg(second, signal.SIGKILL)
    killed = time.monotonic()
    third = wait_for(lambda: (p := pid_of(node.data_dir, "a")) != second and running(p) and p,
                     timeout=BACK_WITHIN, what="app A restarted by the adopting agent")
    print(f"app A restarted {time.monotonic() - killed:.2f} s after it was killed")
    assert third not in (first, second)

    # The broker comes back: what happened offline (one restart) reaches the cloud.
    proxy.up()
    rcloud.wait_for(lambda: stat().get("status") == "Running"
                    and stat()["instances"][0]["restarts"] == 1, timeout=10,
                    what="the offline restart reported")
    assert rcloud.document(NS, unique_name).reported["apps"] == {"a": "v1"}
    assert agent.poll() is None and "Traceback" not in node.log.read_text()
