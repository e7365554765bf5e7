"""PostgreSQL restarted under load: a private server (``initdb``/``pg_ctl`` in a temp dir,
never the machine's own) is the cloud's database while desired changes pour in and two
native agents report them.

Fault: ``pg_ctl restart -m fast`` in the middle of the stream (every connection cut).
Invariants: a change the REST API accepted (200) is never lost -- each node converges to
the last accepted one; a change refused meanwhile is refused with an error, not half
applied; the cloud's documents never go back in version or ``seq``; no app restarted.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.chaos.conftest import World, record, wait_until
from tests.chaos.postgres import PrivatePostgres, postgres_bin
from tests.chaos.test_scenarios import CONVERGE_WITHIN, check_order, start_fleet

pytestmark = pytest.mark.skipif(postgres_bin() is None, reason="PostgreSQL server binaries are not installed")


def test_postgres_restart_under_load(net_admin: None, tmp_path: Path) -> None:
    with PrivatePostgres() as pg:
        world = World(tmp_path, database_url=pg.url)
        try:
            edges, apps = start_fleet(world, 2)
            pids = {edge.name: edge.app_pids() for edge in edges}
            accepted: dict[str, int] = {}
            refused: list[int] = []
            stop = threading.Event()

            def pour() -> None:
                seq = 0
                while not stop.is_set():
                    seq += 1
                    for edge in edges:
                        try:
                            world.set_properties(edge.name, {"seq": seq})
                            accepted[edge.name] = seq
                        except httpx.HTTPStatusError as exc:
                            refused.append(exc.response.status_code)
                        except httpx.TransportError:
                            refused.append(0)
                    time.sleep(0.02)

            writer = threading.Thread(target=pour)
            writer.start()
            time.sleep(1.0)
            restarted = time.monotonic()
            pg.restart()
            time.sleep(2.0)
            stop.set()
            writer.join(10)
            last = dict(accepted)
            converge = wait_until(lambda: all(world.converged(e.name, properties={"seq": last[e.name]}, apps=apps)
                                              for e in edges),
                                  timeout=CONVERGE_WITHIN + 15, what="every node at its last accepted seq")
            restarts = sum(edge.app_pids() != pids[edge.name] for edge in edges)
            record("PostgreSQL restart under load (pg_ctl restart -m fast)", detect=None,
                   converge=round(time.monotonic() - restarted, 2), updates_lost=0,
                   duplicate_restarts=restarts, retried=sum(e.retried() for e in edges),
                   accepted=sum(last.values()), refused=len(refused),
                   refused_codes=sorted(set(refused)))
            assert converge <= CONVERGE_WITHIN
            assert all(code >= 500 or code == 0 for code in refused), refused
            assert restarts == 0
            check_order(world, edges)
            for edge in edges:  # durable: the shadow as stored holds the last accepted change
                assert world.shadow(edge.name)["state"]["desired"]["properties"]["seq"] == last[edge.name]
        finally:
            world.close()
