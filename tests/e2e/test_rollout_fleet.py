"""Rollouts in waves, end to end: 20 simulated nodes (the fleet simulator, speaking the
agent's MQTT protocol) on a private Mosquitto, ``tether cloud serve`` as a child process.

Scenario, stated once: version 1 runs everywhere; version 2 crashes on every node that
runs it; version 3 is healthy. The strategy sends two canary nodes (label ``canary``)
first, then 25 %, then the rest, each wave gated on ``minReadySeconds`` of Running.

- fault: version 2 is rolled out → bound: rolled back within 20 s → invariant: only the
  canary wave ever got version 2, and no node is left on it;
- version 3 is rolled out → bound: complete within 40 s → invariant: the waves went in
  order (canaries, then 5, then 13) and every node runs version 3.

The figures (seconds to each condition) are printed for the issue note (``-s``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from launcher.fleet.fleet import Fleet
from launcher.fleet.services import CloudProcess
from launcher.mosquitto import PrivateMosquitto, mosquitto_binary

pytestmark = pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto is not installed")

NAMES = [f"n{i:02d}" for i in range(20)]
CANARIES = ["n05", "n13"]
NS = "/v1/namespaces/default"
STRATEGY = {"waves": [2, "25%"], "orderBy": "canary", "minReadySeconds": 2, "maxFailures": 0,
            "onFailure": "rollback", "offlineTimeoutSeconds": 30, "progressDeadlineSeconds": 30}


def app(image: str, *, rollout: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {"name": "web", "services": [{"name": "main", "image": image}]}
    if rollout:
        body["rollout"] = STRATEGY
    return body


@pytest.fixture
def cloud(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[CloudProcess, int]]:
    monkeypatch.setenv("TETHER_CLOUD_ROLLOUT_POLL_SECONDS", "0.2")
    with PrivateMosquitto() as broker:
        process = CloudProcess(data_dir=tmp_path / "cloud", mqtt_url=broker.url,
                               log_path=tmp_path / "cloud.log")
        process.start()
        try:
            yield process, broker.port
        finally:
            process.stop()


async def until(probe: Any, *, timeout: float, what: str) -> float:
    """Seconds until ``probe()`` (async) is truthy; fails naming ``what`` past ``timeout``."""
    started = time.monotonic()
    while not await probe():
        if time.monotonic() - started > timeout:
            pytest.fail(f"not {what} within {timeout} s")
        await asyncio.sleep(0.1)
    return time.monotonic() - started


async def scenario(url: str, token: str, port: int) -> dict[str, float]:
    figures: dict[str, float] = {}
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"},
                                 timeout=30) as api:
        items = [{"name": name, "labels": {"canary": "yes"} if name in CANARIES else {}}
                 for name in NAMES]
        assert (await api.post(f"{NS}/nodes:bulk", json={"items": items})).status_code == 200
        fleet = Fleet(NAMES, namespace="default", host="127.0.0.1", port=port)
        fleet.fail("web", "2")  # every node crashes on version 2
        fleet.start()
        try:
            assert await fleet.wait_for("reported", timeout=30)
            assert (await api.put(f"{NS}/apps/web", json=app("web:1", rollout=False))).is_success
            assert await fleet.wait_for("running:web@1", timeout=30)

            async def status() -> dict[str, Any]:
                body: dict[str, Any] = (await api.get(f"{NS}/apps/web/rollout")).json()
                return body

            # -- a version that crashes -------------------------------------------------
            assert (await api.put(f"{NS}/apps/web", json=app("web:2-crashes"))).is_success

            async def rolled_back() -> bool:
                return (await status())["phase"] == "rolledBack"

            figures["crash: rolled back after"] = await until(rolled_back, timeout=20,
                                                              what="rolled back")

            async def all_back_on_1() -> bool:
                nodes = (await status())["nodes"]
                return all(n["reportedVersion"] == "1" and n["status"] == "Running" for n in nodes)

            figures["crash: every node back on 1 after"] = (
                figures["crash: rolled back after"]
                + await until(all_back_on_1, timeout=20, what="every node back on version 1"))
            body = await status()
            reached = sorted(node.name for node in fleet.nodes if "fetched:web@2" in node.marks)
            assert reached == CANARIES, body["message"]  # stopped after the first wave
            assert body["outcomes"]["failed"] == 2 and "simulated crash" in body["message"]
            assert {n["desiredVersion"] for n in body["nodes"]} == {"1"}
            assert not [node.name for node in fleet.nodes if node.apps.running.get("web") == "2"]

            # -- a healthy version ------------------------------------------------------
            assert (await api.put(f"{NS}/apps/web", json=app("web:3"))).is_success

            async def complete() -> bool:
                return (await status())["phase"] == "complete"

            figures["healthy: complete after"] = await until(complete, timeout=40,
                                                             what="complete")
            assert await fleet.wait_for("running:web@3", timeout=10)
            body = await status()
            waves: dict[int, list[str]] = {}
            for node in body["nodes"]:
                waves.setdefault(node["wave"], []).append(node["node"])
                assert (node["reportedVersion"], node["status"]) == ("3", "Running")
            assert sorted(waves) == [1, 2, 3] and sorted(waves[1]) == CANARIES
            assert [len(waves[w]) for w in (1, 2, 3)] == [2, 5, 13]
            fetched = {name: node.marks["fetched:web@3"] for node in fleet.nodes
                       for name in [node.name]}
            assert max(fetched[n] for n in waves[1]) < min(fetched[n] for n in waves[2])
            assert max(fetched[n] for n in waves[2]) < min(fetched[n] for n in waves[3])
            history = (await api.get(f"{NS}/nodes/{CANARIES[0]}/shadow/history")).json()["items"]
            assert any(item["writer"] == "rollout:web" for item in history)
        finally:
            await fleet.stop()
    return figures


def test_a_crashing_version_is_rolled_back_and_a_healthy_one_completes(
    cloud: tuple[CloudProcess, int],
) -> None:
    process, port = cloud
    figures = asyncio.run(scenario(process.url, process.admin_token(), port))
    print({name: round(seconds, 2) for name, seconds in figures.items()})
