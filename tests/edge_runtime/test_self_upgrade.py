"""The agent upgrades itself from version A to B and back on a failed health check, killed
with SIGKILL in the middle, while the node's app keeps running (same pid throughout).

Real processes: a supervisor (systemd's Restart=always) runs version A's venv; the wheels
are served over HTTP; the cloud is the in-test one on the real broker. Each scenario
states its fault, waits for the condition with a deadline, then checks the invariant.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_runtime.identity import save_identity
from schemas.sysapps import AgentTarget, wheel_filename
from tests.edge_runtime.fakes import make_identity
from tests.edge_runtime.mqttcloud import wipe_session
from tests.edge_runtime.nativeprocs import kill_leftovers, pid_of, running
from tests.edge_runtime.resourcecloud import Catalog, ResourceCloud, native_app
from tests.edge_runtime.upgrades import (
    BAD,
    A,
    B,
    Supervisor,
    WheelServer,
    build_versions,
    clean_env,
    sha256,
)

pytestmark = pytest.mark.mosquitto
NS = "default"


@pytest.fixture(scope="session")
def versions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_versions(tmp_path_factory.mktemp("agent-versions"))


@pytest.fixture
def wheels(versions: dict[str, Path]) -> Iterator[WheelServer]:
    server = WheelServer(versions[A].parent)
    yield server
    server.close()


def target(versions: dict[str, Path], server: WheelServer, version: str,
           deadline: int) -> dict[str, Any]:
    wheel = versions[version]
    return AgentTarget(version, url=f"{server.url}/{wheel_filename(version)}",
                       sha256=sha256(wheel), deadline_seconds=deadline).to_json()


def run_node(versions: dict[str, Path], rcloud: ResourceCloud, mosquitto_url: str,
             data_dir: Path, node: str, failpoints: str) -> Supervisor:
    save_identity(make_identity(mosquitto_url, NS, node), data_dir)
    env = clean_env(TETHER_EDGE_TOPIC_ROOT=rcloud.topics.root,
                    TETHER_EDGE_RECONNECT_MIN_SECONDS="0.05",
                    TETHER_EDGE_RECONNECT_MAX_SECONDS="0.4",
                    TETHER_EDGE_FUNCTION_PROXY_PORT="0",
                    TETHER_EDGE_STOP_GRACE_SECONDS="1",
                    TETHER_EDGE_FAILPOINTS=failpoints)
    argv = [str(versions["venv"] / "bin" / "python"), "-I", "-m", "edge_runtime", "run",
            "--data-dir", str(data_dir)]
    return Supervisor(argv, env=env, log=data_dir.parent / "agent.log")


@pytest.mark.timeout(300)  # under a loaded CI machine each restart and pip take seconds
def test_upgrade_to_a_bad_version_rolls_back_and_a_good_one_survives_kills(
    versions: dict[str, Path], wheels: WheelServer, rcloud: ResourceCloud, catalog: Catalog,
    mosquitto_url: str, tmp_path: Path, unique_name: str,
) -> None:
    def agent() -> dict[str, Any]:
        sysapps = rcloud.document(NS, unique_name).reported.get("sysapps", {})
        report = sysapps.get("tether", {})
        return {k: report[k] for k in ("version", "state", "target", "cause") if k in report}

    def app_running() -> bool:
        stats = rcloud.document(NS, unique_name).reported.get("appstats", {})
        return bool(stats.get("web", {}).get("status") == "Running")

    data_dir = tmp_path / "node"
    catalog.add(native_app("web"), "v1")
    rcloud.set_desired(NS, unique_name, {"apps": {"web": "v1"}})
    supervisor = run_node(versions, rcloud, mosquitto_url, data_dir, unique_name,
                          "fetched,trial-linked,committed")
    try:
        rcloud.wait_for(lambda: agent() == {"version": A, "state": "Running"} and app_running(),
                        timeout=30, what="version A running the app")
        pid = pid_of(data_dir, "web")
        assert running(pid)

        # fault: version BAD never reports -> rolled back to A by its deadline (4 s)
        rcloud.set_desired(NS, unique_name,
                           {"sysapps": {"tether": target(versions, wheels, BAD, 4)}})
        rcloud.wait_for(lambda: agent().get("state") == "RolledBack", timeout=60,
                        what="the bad version rolled back")
        assert agent()["version"] == A and agent()["target"] == BAD
        assert "did not report healthy within 4 s" in agent()["cause"]
        assert pid_of(data_dir, "web") == pid and running(pid)
        assert not (data_dir / "agent" / "venvs" / BAD).exists()

        # faults: SIGKILL after the download, after the trial link, after the commit's swap
        rcloud.set_desired(NS, unique_name,
                           {"sysapps": {"tether": target(versions, wheels, B, 30)}})
        rcloud.wait_for(lambda: agent() == {"version": B, "state": "Running"}, timeout=90,
                        what="version B committed")
        home = data_dir / "agent"
        for step in ("fetched", "trial-linked", "committed"):
            assert (home / f".failpoint-{step}").exists(), step
        assert (home / "current").resolve() == (home / "venvs" / B).resolve()
        assert not (home / "trying").exists() and not (home / "trial").exists()
        assert pid_of(data_dir, "web") == pid and running(pid) and app_running()
        assert rcloud.document(NS, unique_name).delta == {}  # the target is mirrored
        assert supervisor.starts >= 4  # three kills, each restarted by the supervisor
    finally:
        supervisor.stop()
        kill_leftovers(data_dir)
        wipe_session(mosquitto_url, f"tether-edge.{NS}.{unique_name}")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_kills_at_the_other_steps_land_on_one_of_the_two_versions(
    versions: dict[str, Path], wheels: WheelServer, rcloud: ResourceCloud, catalog: Catalog,
    mosquitto_url: str, tmp_path: Path, unique_name: str,
) -> None:
    def agent() -> dict[str, Any]:
        report = rcloud.document(NS, unique_name).reported.get("sysapps", {}).get("tether", {})
        return {k: report[k] for k in ("version", "state", "target", "cause") if k in report}

    data_dir, home = tmp_path / "node", tmp_path / "node" / "agent"
    catalog.add(native_app("web"), "v1")
    rcloud.set_desired(NS, unique_name, {"apps": {"web": "v1"}})
    supervisor = run_node(versions, rcloud, mosquitto_url, data_dir, unique_name,
                          "installed,trial-marked,healthy")
    try:
        rcloud.wait_for(lambda: agent().get("state") == "Running" and running(
            pid_of(data_dir, "web")), timeout=30, what="A running the app")
        pid = pid_of(data_dir, "web")
        rcloud.set_desired(NS, unique_name,
                           {"apps": {"web": "v1"},
                            "sysapps": {"tether": target(versions, wheels, B, 30)}})
        # fault: SIGKILL from outside while pip builds the new venv
        rcloud.wait_for(lambda: any((home / "venvs").glob(f"{B}.partial-*")), timeout=30,
                        what="the install under way")
        assert supervisor.process is not None
        os.kill(supervisor.process.pid, signal.SIGKILL)
        # then the failpoints: after the install, after the trial mark, and on the trial
        # once healthy but before its commit -> back on A, RolledBack
        rcloud.wait_for(lambda: agent().get("state") == "RolledBack", timeout=120,
                        what="the uncommitted trial rolled back")
        assert agent()["version"] == A and "stopped during its trial" in agent()["cause"]
        for step in ("installed", "trial-marked", "healthy"):
            assert (home / f".failpoint-{step}").exists(), step
        # desired moves on and back: a new attempt, which commits
        rcloud.set_desired(NS, unique_name, {"sysapps": {"tether": None}})
        rcloud.wait_for(lambda: agent() == {"version": A, "state": "Running"}, what="A again")
        rcloud.set_desired(NS, unique_name,
                           {"sysapps": {"tether": target(versions, wheels, B, 30)}})
        rcloud.wait_for(lambda: agent() == {"version": B, "state": "Running"}, timeout=90,
                        what="B committed")
        assert pid_of(data_dir, "web") == pid and running(pid)
    finally:
        supervisor.stop()
        kill_leftovers(data_dir)
        wipe_session(mosquitto_url, f"tether-edge.{NS}.{unique_name}")
