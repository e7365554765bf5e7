"""``tether bench fleet`` end to end, bounded: a correctness test, not a timed one.

A few hundred simulated nodes against a private Mosquitto and ``tether cloud serve`` on
SQLite: every node connects, converges on the new app and has it accepted, nothing is
rejected, the cloud's rollout status agrees, and every figure is there. Then a smaller
fleet through the CLI with the broker restarted mid-rollout: the nodes back off,
reconnect and still converge. The real figures come from ``tether bench fleet --nodes
10000`` (see the README).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from launcher.benchcli import app
from launcher.fleet.results import rows
from launcher.fleet.running import FleetOptions, run_fleet_bench
from launcher.fleet.services import ScratchDatabase, sample_machine
from launcher.mosquitto import mosquitto_binary

pytestmark = pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto is not installed")

NODES = 400


def test_every_node_converges(tmp_path: Path) -> None:
    result = run_fleet_bench(FleetOptions(nodes=NODES, update_nodes=5, update_seconds=1.5,
                                          timeout=60))
    assert result.failures == [] and result.ok

    assert result.create is not None
    assert (result.create.created, result.create.failed) == (NODES, 0)
    assert result.connect is not None and result.connect.reported == NODES
    assert result.connect.seconds is not None and result.connect.per_node is not None
    assert result.connect.per_node.count == NODES

    rollout = result.rollout
    assert rollout is not None and rollout.converged == NODES
    assert rollout.seconds is not None and rollout.desired_seconds is not None
    assert rollout.desired_seconds <= rollout.seconds
    assert rollout.status_counts == {"matched": NODES, "updated": NODES, "running": NODES,
                                     "failed": 0, "offline": 0}

    updates = result.updates
    assert updates is not None and updates.accepted > 0
    assert updates.rejected == updates.unanswered == 0
    assert updates.latency_ms is not None and updates.latency_ms.p50 <= updates.latency_ms.p99
    # where the phase's CPU went: the cloud and the simulator always work for an update; on
    # SQLite there is no database process to read
    spent = updates.cpu_ms_per_update
    assert spent.keys() == {"cloud", "simulator", "broker", "database"}
    assert spent["cloud"] is not None and spent["cloud"] > 0
    assert spent["simulator"] is not None and spent["simulator"] > 0
    assert spent["database"] is None
    assert updates.machine_busy_percent is not None and 0 < updates.machine_busy_percent <= 100
    assert updates.machine_cores is not None and updates.machine_cores >= 1

    assert result.traffic["rejected"] == {}
    assert result.traffic["connects"] == NODES and result.traffic["disconnects"] == 0
    cloud = result.cloud
    # what the fleet sent is what the cloud's bridge counted: not one lost or refused
    assert cloud is not None and cloud.messages_in == sum(result.traffic["sent"].values())
    assert cloud.messages_handled == cloud.messages_in
    assert cloud.cpu_ms_per_message is not None and cloud.rss_end_mb[0] > 0

    body = json.loads(json.dumps(result.to_json()))
    assert body["ok"] is True and body["rollout"]["converged"] == NODES
    assert ("result", "failures", "none") in rows(result)


def test_the_fleet_reconnects_and_converges_after_a_broker_restart(tmp_path: Path) -> None:
    plot = tmp_path / "fleet.png"
    outcome = CliRunner().invoke(app, [
        "fleet", "--nodes", "150", "--fault", "broker-restart", "--update-nodes", "2",
        "--update-seconds", "0.5", "--timeout", "60", "--json", "--plot", str(plot),
    ])
    assert outcome.exit_code == 0, outcome.output
    body = json.loads(outcome.stdout.strip().splitlines()[-1])
    assert body["ok"] is True
    assert body["rollout"]["converged"] == 150 and body["rollout"]["fault_at"] is not None
    assert body["traffic"]["disconnects"] >= 150  # every node lost its connection ...
    assert body["traffic"]["connects"] >= 300  # ... and made a new one
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_bad_options_are_one_line_errors() -> None:
    outcome = CliRunner().invoke(app, ["fleet", "--nodes", "5", "--replicas", "2"])
    assert outcome.exit_code == 1
    assert "needs --database-url postgresql://" in outcome.output


def test_the_cpu_of_the_benchs_own_database_is_read_from_its_server_processes(postgres_url: str) -> None:
    """``database`` in an update phase's CPU: the server processes serving the bench's
    scratch database, and only those."""
    database = ScratchDatabase(postgres_url)
    database.create()
    try:
        assert database.backend_cpu_seconds() == {}  # nobody connected yet
        with psycopg.connect(database.url) as connection:
            pid = connection.info.backend_pid
            connection.execute("SELECT count(*) FROM generate_series(1, 2000000)").fetchone()
            spent = database.backend_cpu_seconds()
        assert spent is not None and set(spent) == {pid} and spent[pid] > 0
    finally:
        database.drop()


def test_a_database_elsewhere_is_not_read() -> None:
    assert ScratchDatabase("postgresql://db.example.internal/postgres").backend_cpu_seconds() is None


def test_the_machines_counters_move_forward() -> None:
    before = sample_machine()
    started = time.process_time()
    while time.process_time() - started < 0.1:  # 0.1 s of work of our own: ten clock ticks
        sum(index * index for index in range(10_000))
    after = sample_machine()
    assert after.busy > before.busy and after.total > before.total
    assert 0 <= after.steal <= after.total
