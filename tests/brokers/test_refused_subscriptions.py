"""The real edge agent on NATS whose subscribe permission goes missing, then is granted
again: it logs the refusal once, with its cause, keeps retrying on a clean session, and
converges by itself once ``tether broker nats-config`` grants the permission.

The agent first runs with the permission (NATS keeps its persistent session), restarts
without it (NATS cannot restore that session's subscriptions), and is granted it back.
The clean session of the retries is there for NATS 2.9's session that stays deaf after
such a failure (issue 15); this sequence does not reproduce that deafness on NATS
2.9.10 here (it passes with persistent retries too), so it proves the log-once and the
recovery, not the need for the clean session."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from cloud_api.runtime import Cloud
from edge_runtime.activation import activate
from launcher.brokers import RunningBroker
from tests.brokers.conftest import TOPICS, Clouds, Nodes, is_online, wait_for

pytestmark = pytest.mark.slow  # two agent child processes: ~8 s
BROKERS_ONLY = ("nats",)
REFUSAL = "refused this node's subscriptions"


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[Callable[[Path], subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    env = {**os.environ, "TETHER_EDGE_TOPIC_ROOT": TOPICS.root,
           "TETHER_EDGE_RECONNECT_MIN_SECONDS": "0.2", "TETHER_EDGE_RECONNECT_MAX_SECONDS": "0.8"}

    def run(data_dir: Path) -> subprocess.Popen[bytes]:
        with (tmp_path / "edge.log").open("ab") as out:
            started.append(subprocess.Popen(
                [sys.executable, "-m", "tether", "edge", "run", "--data-dir", str(data_dir)],
                stdout=out, stderr=subprocess.STDOUT, env=env))
        return started[-1]

    yield run
    for process in started:
        process.kill()
        process.wait()


def test_a_refused_subscription_is_logged_once_and_recovers_when_granted(
    clouds: Clouds, nodes: Nodes, broker: RunningBroker, tmp_path: Path,
    rest: Callable[[Cloud], httpx.Client], agents: Callable[[Path], subprocess.Popen[bytes]],
    record_property: Callable[[str, object], None],
) -> None:
    cloud = clouds.open()
    api = rest(cloud)
    name = nodes.unique
    cloud.create_node(name)
    data_dir, log = tmp_path / "edge", tmp_path / "edge.log"
    activate(str(api.base_url.copy_with(path="")).rstrip("/"), cloud.issue_activation(name).token,
             data_dir)
    broker.nodes_changed()

    def converged_on(fan: str) -> Callable[[], bool]:
        def check() -> bool:
            state = api.get(f"/nodes/{name}/shadow").json()["state"]
            return bool(state["reported"].get("properties") == {"fan": fan} and not state["delta"])
        return check

    def desire(fan: str) -> None:
        assert api.patch(f"/nodes/{name}/shadow",
                         json={"state": {"desired": {"properties": {"fan": fan}}}}).status_code == 200

    first = agents(data_dir)  # with the permission: NATS keeps its persistent session
    desire("on")
    wait_for(converged_on("on"), timeout=20, what=f"the agent converged (log: {log})")
    first.kill()
    first.wait()
    own_root = f'"{TOPICS.root.replace("/", ".")}.default.{name}.>", '
    broker.nodes_changed(edit=lambda text: text.replace(own_root, ""))  # permission missing
    agents(data_dir)
    wait_for(lambda: REFUSAL in log.read_text(), timeout=20, what=f"the refusal in {log}")
    connects = log.read_text().count("connected to")
    wait_for(lambda: log.read_text().count("connected to") >= connects + 3, timeout=10,
             what="the agent retrying")
    assert log.read_text().count(REFUSAL) == 1, "the same refusal was logged more than once"
    desire("off")
    time.sleep(0.5)
    assert not converged_on("off")(), "converged without its subscriptions?"
    broker.nodes_changed()  # the permission granted again, as nats-config would
    took = wait_for(converged_on("off"), timeout=15, what=f"convergence once granted ({log})")
    record_property("converged after the grant s", round(took, 2))
    assert is_online(cloud, name) and "now grants" in log.read_text()
