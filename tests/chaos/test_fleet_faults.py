"""The fleet simulator through kernel faults: ``tether bench fleet --fault partition``.

Fault: every simulated node's socket lives in one network namespace, and every packet in
or out of it is dropped from just before the rollout's POST for ``partition_seconds``.
Invariant: every node converges on the new app once the partition ends, nothing is
rejected, and the cloud's rollout status agrees with the fleet. The figure is the time
from the POST to the last node Running, partition included.
"""

from __future__ import annotations

import pytest

from launcher.fleet.running import FleetOptions, run_fleet_bench
from tests.chaos.conftest import record


def fleet_partition(nodes: int, seconds: float) -> None:
    result = run_fleet_bench(FleetOptions(nodes=nodes, fault="partition", partition_seconds=seconds,
                                          update_nodes=2, update_seconds=0.5, timeout=seconds + 60))
    rollout = result.rollout
    assert rollout is not None
    record(f"fleet partition {seconds:g} s ({nodes} simulated nodes)", detect=None,
           converge=rollout.seconds, after_heal=None if rollout.seconds is None else round(rollout.seconds - seconds, 2),
           updates_lost=0, dead_links=result.traffic["dead_links"],
           resent=sum(result.traffic["resent"].values()))
    assert result.failures == [] and result.ok
    assert rollout.converged == nodes and rollout.seconds is not None
    assert rollout.seconds >= seconds  # nothing got through the partition
    assert rollout.status_counts["running"] == nodes
    assert result.traffic["rejected"] == {}


def test_fleet_partition_bounded(net_admin: None) -> None:
    fleet_partition(40, 2.0)


@pytest.mark.chaos
def test_fleet_partition_30s(net_admin: None) -> None:
    fleet_partition(400, 30.0)
