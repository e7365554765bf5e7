"""An agent stopped with SIGTERM leaves its native apps running and the next one adopts
them (same pid, no second copy); ``tether edge stop --remove-apps`` stops agent and apps
and leaves no process behind. Real agent processes, a real broker."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from edge_runtime.cli import app as edge_cli
from edge_runtime.identity import Identity
from schemas.topics import TopicScheme
from tests.edge_runtime.mqttcloud import wipe_session
from tests.edge_runtime.nativeprocs import kill_leftovers, pid_of, running, wait_for
from tests.edge_runtime.resourcecloud import Catalog, ResourceCloud, native_app
from tests.edge_runtime.test_offline import Agents

pytestmark = pytest.mark.mosquitto
ROOT = Path(__file__).parents[2]
NS = "default"


def processes_under(data_dir: Path) -> list[psutil.Process]:
    """Every live process whose working directory is inside ``data_dir`` (an app's)."""
    found = []
    for process in psutil.process_iter(["cwd", "status"]):
        cwd = process.info.get("cwd")
        if cwd and cwd.startswith(str(data_dir)) and process.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(process)
    return found


@pytest.fixture
def node(
    tmp_path: Path, mosquitto_url: str, unique_name: str,
    write_identity: Callable[..., Identity], topic_scheme: TopicScheme,
) -> Iterator[Agents]:
    data_dir = tmp_path / "edge"
    identity = write_identity(data_dir, mosquitto_url, NS, unique_name)
    agents = Agents(data_dir, topic_scheme)
    yield agents
    agents.close()
    kill_leftovers(data_dir)
    wipe_session(mosquitto_url, identity.client_id)


def stop_command(data_dir: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge_runtime", "stop", "--data-dir",
                           str(data_dir), *flags], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=False)


def test_sigterm_leaves_apps_to_adopt_and_stop_remove_apps_leaves_nothing(
    rcloud: ResourceCloud, catalog: Catalog, node: Agents, unique_name: str,
) -> None:
    def status() -> object:
        return rcloud.document(NS, unique_name).reported.get("appstats", {}).get("a", {}).get(
            "status")

    catalog.add(native_app("a"), "v1")
    rcloud.set_desired(NS, unique_name, {"apps": {"a": "v1"}})
    agent = node.start()
    rcloud.wait_for(lambda: status() == "Running", timeout=10, what="app A running")
    first = pid_of(node.data_dir, "a")
    assert running(first) and [p.pid for p in processes_under(node.data_dir)] == [first]

    # `tether edge stop` (SIGTERM, as systemctl stop sends): the agent goes, the app stays
    stopped = stop_command(node.data_dir)
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.strip() == (f"stopped the agent (pid {agent.pid}); its apps keep "
                                      "running (--remove-apps stops them)")
    assert agent.wait(5) == 0 and running(first)

    # the next agent adopts it: same pid, no second copy
    agent = node.start()
    wait_for(lambda: node.logged("1 running processes adopted"), timeout=10,
             what="the new agent adopting app A")
    rcloud.wait_for(lambda: status() == "Running", timeout=10, what="app A reported again")
    assert pid_of(node.data_dir, "a") == first
    assert [p.pid for p in processes_under(node.data_dir)] == [first]

    # an operator who wants the apps gone: no agent, no app, no orphan
    removed = stop_command(node.data_dir, "--remove-apps")
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout.strip() == (f"stopped the agent (pid {agent.pid}); stopped 1 app "
                                      "processes (a/main-0)")
    assert agent.wait(5) == 0
    assert not running(first) and processes_under(node.data_dir) == []
    assert not list(node.data_dir.glob("apps/*/run/*.pid"))
    assert (node.data_dir / "apps" / "a" / "logs").is_dir()  # logs kept

    # nothing left to stop: says so, succeeds
    again = CliRunner().invoke(edge_cli, ["stop", "--data-dir", str(node.data_dir), "--remove-apps"])
    assert again.exit_code == 0
    assert again.output.strip() == "no agent was running; stopped 0 app processes (none was running)"


def test_stop_without_a_data_dir_fails_with_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(edge_cli, ["stop", "--data-dir", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert result.output.strip() == (f"error: no data dir {tmp_path / 'nope'}: pass the agent's "
                                     "--data-dir")
