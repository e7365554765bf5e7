"""The edge's disk full during cache writes: a 2 MiB tmpfs is the agent's data dir.

Fault: a filler file takes every free byte. Bound and invariant: the agent keeps
applying and reporting desired changes from memory (converged within seconds), says so
once in its log, leaves the last complete cache file on disk, and once space returns
writes the cache again within ``CACHE_RETRY_SECONDS`` (plus a poll); its app keeps its pid.
"""

from __future__ import annotations

import json
import subprocess
import time

from edge_runtime.syncing import CACHE_RETRY_SECONDS
from tests.chaos.conftest import Edge, World, record, wait_until

FULL = "running on what is held in memory"
CAUGHT_UP = "is written again"


def cached_seq(edge: Edge) -> object:
    """The desired ``seq`` in the cache file on disk (what a crash would restart from)."""
    tables = json.loads((edge.data_dir / "cache.json").read_text())
    return tables["document"]["1"]["desired"].get("properties", {}).get("seq")


def test_a_full_disk_leaves_the_node_running_from_memory_until_space_returns(world: World) -> None:
    edge = Edge(world, "diskfull")
    world.edges[edge.name] = edge
    edge.data_dir.mkdir(mode=0o700)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tether-chaos", str(edge.data_dir)],
                   check=True)
    try:
        edge.activate()
        edge.start()
        world.put_app("sleeper")
        apps = {"sleeper": world.app_version("sleeper")}
        world.set_properties(edge.name, {"seq": 0})
        wait_until(lambda: world.converged(edge.name, properties={"seq": 0}, apps=apps),
                   timeout=30, what="the first sync")
        wait_until(lambda: cached_seq(edge) == 0, timeout=5, what="seq 0 in the cache file")
        pids = edge.app_pids()

        filler = edge.data_dir / "filler"
        with filler.open("wb") as out:
            try:
                while True:
                    out.write(b"\0" * 65536)
                    out.flush()
            except OSError:
                pass
        started = time.monotonic()
        for seq in (1, 2):
            world.set_properties(edge.name, {"seq": seq})
            wait_until(lambda s=seq: world.converged(edge.name, properties={"seq": s}), timeout=15,
                       what=f"seq {seq} applied and reported with the disk full")
        applied = time.monotonic() - started
        assert cached_seq(edge) == 0, "the file on disk stays the last complete one"
        assert edge.log().count(FULL) == 1, "said once, not per write"

        filler.unlink()
        freed = time.monotonic()
        caught = wait_until(lambda: cached_seq(edge) == 2, timeout=CACHE_RETRY_SECONDS + 5,
                            what="the cache written again once space returned")
        assert CAUGHT_UP in edge.log()
        record("edge disk full during cache writes (2 MiB tmpfs)", detect=None,
               converge=round(applied, 2), catch_up=round(time.monotonic() - freed, 2),
               updates_lost=0, duplicate_restarts=int(edge.app_pids() != pids), retried=edge.retried())
        assert caught <= CACHE_RETRY_SECONDS + 1
        assert edge.app_pids() == pids
        assert world.documents.out_of_order(edge.name, "seq") == []
    finally:
        edge.close()
        subprocess.run(["umount", "-l", str(edge.data_dir)], check=False)
