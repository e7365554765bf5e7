"""Scenarios on real native agents, each in a namespace of its own: fault -> wait for a
condition with a deadline -> check the invariants.

Invariants after each: every node converges to the last desired (properties and app
version, no delta); no accepted update lost (the last accepted desired is what is
reported); no report applied out of order (the cloud's ``documents`` stream per node
never goes back in version or in the reported ``seq``); no duplicate side effect (an app
is not restarted because its node reconnected: its pid stays the same).
"""

from __future__ import annotations

import time

import pytest

from tests.chaos.conftest import Edge, World, record, wait_until

CONVERGE_WITHIN = 15.0  # seconds after the fault ends


def settle(world: World, edges: list[Edge], *, seq: int, apps: dict[str, str]) -> float:
    """Seconds until every edge reports ``seq`` and ``apps`` Running, with no delta."""
    return wait_until(lambda: all(world.online(e.name) and world.converged(
        e.name, properties={"seq": seq}, apps=apps) for e in edges),
        timeout=CONVERGE_WITHIN + 15, what=f"every node at seq {seq} and {apps}")


def start_fleet(world: World, count: int) -> tuple[list[Edge], dict[str, str]]:
    edges = [world.add_edge(f"edge{i}") for i in range(count)]
    world.put_app("sleeper")
    apps = {"sleeper": world.app_version("sleeper")}
    for edge in edges:
        world.set_properties(edge.name, {"seq": 0})
    settle(world, edges, seq=0, apps=apps)
    return edges, apps


def check_order(world: World, edges: list[Edge]) -> None:
    for edge in edges:
        assert world.documents.out_of_order(edge.name, "seq") == [], edge.name


def partition(world: World, seconds: float) -> None:
    edges, apps = start_fleet(world, 2)
    cut, other = edges
    pids = {edge.name: edge.app_pids() for edge in edges}
    started = time.monotonic()
    cut.ns.blackhole()
    accepted = 0
    for seq in range(1, 4):  # accepted by the cloud while the node cannot hear
        world.set_properties(cut.name, {"seq": seq})
        world.set_properties(other.name, {"seq": seq})
        accepted += 1
    detect = None  # when the cloud saw the node offline, if within the partition
    while time.monotonic() - started < seconds:
        if detect is None and not world.online(cut.name):
            detect = round(time.monotonic() - started, 2)
        time.sleep(0.1)
    cut.ns.heal()
    converge = settle(world, edges, seq=3, apps=apps)
    restarts = sum(edge.app_pids() != pids[edge.name] for edge in edges)
    record(f"edge partition {seconds:g} s (nft drop)", detect=detect,
           converge=round(converge, 2), updates_lost=0, duplicate_restarts=restarts,
           retried=sum(e.retried() for e in edges), accepted_during=accepted,
           reconnects=cut.relay.connections - 1)
    assert converge <= CONVERGE_WITHIN
    assert restarts == 0, "an app was restarted because its node reconnected"
    check_order(world, edges)


def test_partition_bounded(world: World) -> None:
    partition(world, 4.0)  # shorter than the will (1.5 x keepalive): the cloud never sees it


@pytest.mark.chaos
def test_partition_30s(world: World) -> None:
    partition(world, 30.0)


def test_edge_reboot_while_offline_keeps_its_apps_from_the_cache(world: World) -> None:
    edges, apps = start_fleet(world, 1)
    edge = edges[0]
    pids = edge.app_pids()
    edge.ns.cut()  # the cable pulled
    edge.kill()  # then the agent dies, and comes back with no broker reachable
    logged = len(edge.log())
    edge.start()
    wait_until(lambda: "resuming from the cached document" in edge.log()[logged:], timeout=15,
               what="the restarted agent resuming from its cache")
    time.sleep(2 * float(world.edge_env["TETHER_EDGE_RECONCILE_SECONDS"]))  # reconcile passes, offline
    assert edge.app_pids() == pids, "the app was restarted (or stopped) by an agent restarted offline"
    world.set_properties(edge.name, {"seq": 1})
    started = time.monotonic()
    edge.ns.heal()
    converge = settle(world, edges, seq=1, apps=apps)
    record("edge reboot while offline (link down, SIGKILL, restart)", detect=None,
           converge=round(time.monotonic() - started, 2), updates_lost=0,
           duplicate_restarts=int(edge.app_pids() != pids), retried=edge.retried())
    assert converge <= CONVERGE_WITHIN
    assert edge.app_pids() == pids
    check_order(world, edges)


def test_broker_restart_mid_rollout(world: World) -> None:
    edges, apps = start_fleet(world, 2)
    world.put_app("sleeper", tag="2")  # the rollout: a new version for every node
    new = {"sleeper": world.app_version("sleeper")}
    assert new != apps
    started = time.monotonic()
    world.mosquitto.restart()  # mid-rollout: the deltas may or may not have gone out
    for edge in edges:
        world.set_properties(edge.name, {"seq": 1})
    converge = settle(world, edges, seq=1, apps=new)
    pids = {edge.name: edge.app_pids() for edge in edges}
    time.sleep(2)  # a reconnect or a late duplicate delta would restart the app now
    restarts = sum(edge.app_pids() != pids[edge.name] for edge in edges)
    record("broker restart mid-rollout", detect=None, converge=round(time.monotonic() - started - 2, 2),
           updates_lost=0, duplicate_restarts=restarts, retried=sum(e.retried() for e in edges))
    assert converge <= CONVERGE_WITHIN + 10
    assert restarts == 0
    check_order(world, edges)


def test_a_degraded_link_slow_lossy_and_late_still_converges(world: World) -> None:
    """Fault: 256 kbit/s (tc tbf), 10 % of packets dropped (nft numgen random), 150 ±
    50 ms each way (the relay). Bound: converged within ``CONVERGE_WITHIN``; no restart."""
    edges, apps = start_fleet(world, 1)
    edge = edges[0]
    pids = edge.app_pids()
    edge.ns.slow(256)
    edge.ns.loss(10)
    edge.relay.set_delay(0.15, 0.05)
    started = time.monotonic()
    for seq in (1, 2, 3):
        world.set_properties(edge.name, {"seq": seq})
    converge = settle(world, edges, seq=3, apps=apps)
    record("degraded link (256 kbit/s tbf, 10 % loss, 150±50 ms relay)", detect=None,
           converge=round(time.monotonic() - started, 2), updates_lost=0,
           duplicate_restarts=int(edge.app_pids() != pids), retried=edge.retried())
    assert converge <= CONVERGE_WITHIN
    assert edge.app_pids() == pids
    check_order(world, edges)
