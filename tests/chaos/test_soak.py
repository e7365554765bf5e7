"""The soak, bounded: a simulated fleet through back-to-back rounds of a broker restart, a
partition of the whole fleet (nftables, in its namespace) and a quiet round, each with a
rollout every node must finish; the cloud's and broker's RSS and descriptors must stay
flat. The long soak is ``tether bench soak`` (an hour, 1,000 nodes by default) or the
``chaos``-marked test below (ten minutes, 500 nodes)."""

from __future__ import annotations

import pytest

from launcher.fleet.soak import SoakOptions, run_soak
from tests.chaos.conftest import record


def soak(options: SoakOptions) -> None:
    result = run_soak(options)
    rounds = result.rounds
    record(f"soak {options.seconds:g} s, {options.nodes} nodes, {len(rounds)} rounds", detect=None,
           converge=max((r.converge_seconds or 0.0) for r in rounds) if rounds else None,
           cloud_rss_mb=[rounds[0].cloud_rss_mb, rounds[-1].cloud_rss_mb] if rounds else None,
           cloud_fds=[rounds[0].cloud_fds, rounds[-1].cloud_fds] if rounds else None,
           broker_fds=[rounds[0].broker_fds, rounds[-1].broker_fds] if rounds else None)
    assert result.failures == [] and result.ok
    assert {r.fault for r in rounds} >= {"broker-restart", "partition", "none"}
    assert all(r.converge_seconds is not None for r in rounds)


def test_soak_bounded(net_admin: None) -> None:
    soak(SoakOptions(nodes=60, seconds=0, fault_every=0, partition_seconds=2, timeout=30))


@pytest.mark.chaos
def test_soak_ten_minutes(net_admin: None) -> None:
    soak(SoakOptions(nodes=500, seconds=600, fault_every=60, partition_seconds=20, timeout=120))
