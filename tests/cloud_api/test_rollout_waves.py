"""The wave engine on a real store (SQLite and PostgreSQL), nodes' reports written through
the bridge's batched path, time moved by the test's clock: waves admit nodes in label
order, a crashing version is rolled back everywhere it reached, pause/resume/undo work,
and the node's shadow history says who changed what."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from cloud_api.runtime import Cloud
from cloud_api.store.shadow_writing import Update, write_batch
from schemas.shadow import parse_update_request
from tests.cloud_api.conftest import Clock

NS = "/v1/namespaces/default"
NODES = [f"n{i:02d}" for i in range(10)]
STRATEGY = {"waves": [1, "30%"], "orderBy": "ring", "minReadySeconds": 10, "maxFailures": 0,
            "onFailure": "rollback", "offlineTimeoutSeconds": 60, "progressDeadlineSeconds": 120}


@pytest.fixture
def cloud(make_settings: Any, clock: Clock) -> Any:
    # the test takes every step itself: no background loop between its looks
    with Cloud(make_settings(rollout_poll_seconds=3600), clock=clock) as opened:
        yield opened


def app_body(image: str, *, rollout: dict[str, Any] | None = STRATEGY) -> dict[str, Any]:
    body: dict[str, Any] = {"name": "web", "services": [{"name": "main", "image": image}]}
    if rollout is not None:
        body["rollout"] = rollout
    return body


def settle(cloud: Cloud) -> None:
    assert cloud.rematcher.wait_idle(10)


def desired(api: httpx.Client) -> dict[str, str | None]:
    return {node: api.get(f"{NS}/nodes/{node}/shadow").json()["state"]["desired"]["apps"].get("web")
            for node in NODES}


def report(cloud: Cloud, clock: Clock, nodes: list[str], version: str, status: str = "Running",
           restarts: int = 0) -> None:
    """The nodes report running ``version`` of web, as an agent does, through the bridge's path."""
    stats = {"version": version, "status": status,
             "instances": [{"name": "main-0", "status": status, "restarts": restarts}]}
    body = {"state": {"reported": {"apps": {"web": version}, "appstats": {"web": stats}}}}
    ops = [Update("default", node, request=parse_update_request(body, writable=("reported",)))
           for node in nodes]
    write_batch(cloud.store, ops, now=int(clock.now), limits=cloud.settings.limits)
    assert all(op.error is None for op in ops)


def mark_online(cloud: Cloud, nodes: list[str]) -> None:
    from cloud_api.store.shadow_writing import Presence
    write_batch(cloud.store, [Presence("default", node, online=True) for node in nodes], now=0,
                limits=cloud.settings.limits)


def step(cloud: Cloud, clock: Clock, seconds: float = 0) -> None:
    clock.now += seconds
    cloud.rollouts.run_once()  # as the background loop does: one look, matching told
    settle(cloud)


@pytest.fixture
def fleet(cloud: Cloud, api: httpx.Client, clock: Clock) -> list[str]:
    """Ten nodes on version 1 of web (no strategy yet: all at once), all online and running it;
    n07 is the canary (ring=0), the rest ring=1."""
    for node in NODES:
        labels = {"ring": "0" if node == "n07" else "1"}
        assert api.post(f"{NS}/nodes", json={"name": node, "labels": labels}).status_code == 201
    assert api.put(f"{NS}/apps/web", json=app_body("web:1", rollout=None)).status_code in (200, 201)
    settle(cloud)
    mark_online(cloud, NODES)
    report(cloud, clock, NODES, "1")
    return NODES


def test_a_crashing_version_stops_at_the_canary_and_is_rolled_back(
    cloud: Cloud, api: httpx.Client, clock: Clock, fleet: list[str]
) -> None:
    assert api.put(f"{NS}/apps/web", json=app_body("web:2-broken")).status_code == 200
    settle(cloud)
    assert set(desired(api).values()) == {"1"}  # nobody moves before the first wave
    step(cloud, clock)
    assert desired(api) == {node: "2" if node == "n07" else "1" for node in NODES}
    report(cloud, clock, ["n07"], "2", status="Failed")
    step(cloud, clock, 1)
    status = api.get(f"{NS}/apps/web/rollout").json()
    assert status["phase"] == "rolledBack" and status["stable"] == "1", status
    assert "n07" in status["message"] and status["outcomes"]["failed"] == 1
    assert set(desired(api).values()) == {"1"}  # back everywhere it reached
    history = api.get(f"{NS}/nodes/n07/shadow/history").json()["items"]
    writers = [item["writer"] for item in history if item["section"] == "desired"]
    assert writers[:2] == ["rollout:web", "rollout:web"]  # the rollback, then the wave
    assert history[0]["apps"]["desired"] == {"web": "1"}


def test_a_healthy_version_completes_every_wave_in_order(
    cloud: Cloud, api: httpx.Client, clock: Clock, fleet: list[str]
) -> None:
    assert api.put(f"{NS}/apps/web", json=app_body("web:2")).status_code == 200
    settle(cloud)
    waves: list[list[str]] = []
    seen: set[str] = set()
    for _ in range(12):
        step(cloud, clock, 6)  # first seen running, then ready 10 s (minReadySeconds) later
        admitted = {n for n, v in desired(api).items() if v == "2"} - seen
        if admitted:
            waves.append(sorted(admitted))
            report(cloud, clock, sorted(admitted), "2")
            seen |= admitted
            assert api.get(f"{NS}/apps/web/rollout").json()["phase"] == "progressing"
    assert waves == [["n07"], ["n00", "n01", "n02"], ["n03", "n04", "n05", "n06", "n08", "n09"]]
    status = api.get(f"{NS}/apps/web/rollout").json()
    assert status["phase"] == "complete" and status["outcomes"]["ready"] == 10
    assert set(desired(api).values()) == {"2"}


def test_an_offline_node_times_out_without_holding_the_wave(
    cloud: Cloud, api: httpx.Client, clock: Clock, fleet: list[str]
) -> None:
    from cloud_api.store.shadow_writing import Presence
    write_batch(cloud.store, [Presence("default", "n07", online=False)], now=0,
                limits=cloud.settings.limits)
    api.put(f"{NS}/apps/web", json=app_body("web:2"))
    settle(cloud)
    step(cloud, clock)  # wave 1: the canary, offline
    step(cloud, clock, 30)
    assert api.get(f"{NS}/apps/web/rollout").json()["wave"] == 1
    step(cloud, clock, 31)  # past offlineTimeoutSeconds: reported, and the next wave goes
    status = api.get(f"{NS}/apps/web/rollout").json()
    assert status["wave"] == 2 and status["outcomes"]["timedOut"] == 1
    canary = next(n for n in status["nodes"] if n["node"] == "n07")
    assert canary["outcome"] == "timedOut" and canary["desiredVersion"] == "2"  # gets it on return


def test_pause_resume_undo_and_one_line_errors(
    cloud: Cloud, api: httpx.Client, clock: Clock, fleet: list[str]
) -> None:
    api.put(f"{NS}/apps/web", json=app_body("web:2"))
    settle(cloud)
    step(cloud, clock)
    assert api.post(f"{NS}/apps/web/rollout/pause").json()["phase"] == "paused"
    report(cloud, clock, ["n07"], "2")
    step(cloud, clock, 11)
    step(cloud, clock, 11)
    assert sum(v == "2" for v in desired(api).values()) == 1  # paused: no new wave
    refused = api.post(f"{NS}/apps/web/rollout/pause")
    assert refused.status_code == 409 and "only a progressing" in refused.json()["message"]
    assert api.post(f"{NS}/apps/web/rollout/resume").json()["phase"] == "progressing"
    step(cloud, clock)
    assert sum(v == "2" for v in desired(api).values()) == 4
    assert api.post(f"{NS}/apps/web/rollout/undo").json()["phase"] == "rolledBack"
    settle(cloud)
    assert set(desired(api).values()) == {"1"}
    missing = api.post(f"{NS}/apps/nope/rollout/undo")
    assert missing.status_code == 404 and "spec.rollout" in missing.json()["message"]


def test_a_restart_loop_fails_the_node_and_pause_keeps_it(
    cloud: Cloud, api: httpx.Client, clock: Clock, fleet: list[str]
) -> None:
    api.put(f"{NS}/apps/web", json=app_body("web:2", rollout={**STRATEGY, "onFailure": "pause"}))
    settle(cloud)
    step(cloud, clock)
    report(cloud, clock, ["n07"], "2", restarts=0)
    step(cloud, clock, 2)
    report(cloud, clock, ["n07"], "2", restarts=3)
    step(cloud, clock, 2)
    status = api.get(f"{NS}/apps/web/rollout").json()
    assert status["phase"] == "paused" and "restarted 3 time(s)" in status["message"]
    assert desired(api)["n07"] == "2"  # paused, not rolled back


def test_versions_are_listed_and_diffed(cloud: Cloud, api: httpx.Client, fleet: list[str]) -> None:
    api.put(f"{NS}/apps/web", json=app_body("web:2"))
    listed = api.get(f"{NS}/apps/web/versions").json()["items"]
    assert [item["version"] for item in listed] == ["2", "1"] and listed[0]["current"]
    assert "services[0].image" in listed[0]["changed"] and "rollout" in listed[0]["changed"]
    changes = api.get(f"{NS}/apps/web/diff", params={"from": "1", "to": "2"}).json()["changes"]
    assert {"path": "services[0].image", "from": "web:1", "to": "web:2"} in changes
    assert api.get(f"{NS}/apps/web/diff").json()["changes"] == changes  # current vs the one before
    bad = api.get(f"{NS}/apps/web/diff", params={"from": "1", "to": "9"})
    assert bad.status_code == 404 and "no version '9'" in bad.json()["message"]
    assert api.get(f"{NS}/widgets/web/versions").status_code == 404


def test_shadow_history_names_rest_matching_and_the_node(
    cloud: Cloud, api: httpx.Client, clock: Clock, fleet: list[str]
) -> None:
    api.patch(f"{NS}/nodes/n01/shadow", json={"state": {"desired": {"properties": {"fan": "on"}}}})
    items = api.get(f"{NS}/nodes/n01/shadow/history").json()["items"]
    assert items[0]["writer"].startswith("rest:token/") and items[0]["change"]["properties"]
    assert items[1]["writer"] == "node" and items[1]["apps"]["reported"] == {"web": "1"}
    assert items[-1]["writer"] == "matching:web"
    at = items[1]["time"]
    then = api.get(f"{NS}/nodes/n01/shadow/history", params={"at": at, "limit": 1}).json()
    assert then["items"][0]["apps"]["reported"] == {"web": "1"}


def test_a_rollout_another_replica_holds_is_skipped_not_waited_for(
    cloud: Cloud, api: httpx.Client, clock: Clock, fleet: list[str], store_url: str
) -> None:
    if not store_url.startswith("postgresql"):
        pytest.skip("replicas share PostgreSQL; SQLite has one writer lock per database")
    from sqlalchemy import select

    from cloud_api.services.rollout_state import ROLLOUTS
    from cloud_api.services.rollout_waves import advance
    api.put(f"{NS}/apps/web", json=app_body("web:2"))
    settle(cloud)
    with cloud.store.connect() as other:  # another replica, in the middle of its step
        other.execute(select(ROLLOUTS).where(ROLLOUTS.c.name == "web").with_for_update())
        assert advance(cloud.store, now=int(clock.now)) == []
        other.rollback()
    assert [moved.message for moved in advance(cloud.store, now=int(clock.now))] == ["wave 1: 1 node(s)"]


def test_a_restarted_cloud_takes_the_rollout_up_where_it_was(
    cloud: Cloud, api: httpx.Client, clock: Clock, fleet: list[str], make_settings: Any
) -> None:
    api.put(f"{NS}/apps/web", json=app_body("web:2"))
    settle(cloud)
    step(cloud, clock)
    report(cloud, clock, ["n07"], "2")
    step(cloud, clock, 1)
    cloud.close()
    with Cloud(make_settings(rollout_poll_seconds=3600), clock=clock) as again:
        step(again, clock, 11)  # the canary proved itself meanwhile: the next wave goes
        with again.store.session() as session:
            from cloud_api.services.rollout_control import rollout_status
            status = rollout_status(session, "default", "web")
    assert status["wave"] == 2 and status["outcomes"] == {"pending": 3, "ready": 1, "failed": 0,
                                                          "timedOut": 0}


def test_a_step_judged_while_an_operator_paused_it_is_not_written(
    cloud: Cloud, api: httpx.Client, clock: Clock, fleet: list[str]
) -> None:
    from cloud_api.services.rollout_control import pause
    from cloud_api.services.rollout_waves import AppSubject, advance

    class PausedMeanwhile(AppSubject):
        def observe(self, session: Any, namespace: str, name: str, nodes: Any) -> Any:
            pause(cloud.store, namespace, name, now=int(clock.now))  # between read and write
            return super().observe(session, namespace, name, nodes)

    api.put(f"{NS}/apps/web", json=app_body("web:2"))
    settle(cloud)
    assert advance(cloud.store, now=int(clock.now), subjects={"app": PausedMeanwhile()}) == []
    status = api.get(f"{NS}/apps/web/rollout").json()
    assert status["phase"] == "paused" and status["wave"] == 0  # no wave admitted


class AgentVersions:
    """A ``Subject`` of another kind: an agent version per node, kept in memory here (the
    agent self-upgrade plugs its own in the same way, writing ``desired.sysapps``)."""

    def __init__(self, nodes: list[str]) -> None:
        self.desired = {node: "1.0" for node in nodes}
        self.running = dict(self.desired)
        self.published: list[str] = []

    def scope(self, session: Any, namespace: str, name: str) -> dict[str, dict[str, str]]:
        return {node: {} for node in self.desired}

    def observe(self, session: Any, namespace: str, name: str, nodes: Any) -> Any:
        from cloud_api.services.waves import Observation
        return {node: Observation(online=True, value=self.running[node], status="Running")
                for node in nodes}

    def assign(self, session: Any, namespace: str, name: str, nodes: Any, *, now: int) -> Any:
        from cloud_api.services.rollout_control import rollout_of
        from cloud_api.services.waves import Phase, pinned_value
        row, records = rollout_of(session, namespace, name, kind="sysapp")
        assert row is not None
        for node in nodes:
            value = pinned_value(Phase(row["phase"]), admitted=node in records,
                                 target=row["target"], stable=row["stable"])
            self.desired[node] = value or "1.0"
        return lambda: self.published.extend(sorted(nodes))  # after the commit


def test_the_engine_drives_any_value_per_node(cloud: Cloud, clock: Clock, fleet: list[str]) -> None:
    from cloud_api.services import rollout_control, rollout_waves
    from cloud_api.services.rollout_state import version_written
    agents = AgentVersions(NODES)
    subjects = {"sysapp": agents}
    with cloud.store.session() as session:
        version_written(session, "default", "tether", previous="1.0", target="2.0", now=0,
                        strategy={"waves": [2], "minReadySeconds": 0}, kind="sysapp")
        session.commit()
    rollout_waves.advance(cloud.store, now=1, subjects=subjects)
    assert sorted(n for n, v in agents.desired.items() if v == "2.0") == ["n00", "n01"]
    assert agents.published == ["n00", "n01"]
    agents.running.update({"n00": "2.0", "n01": "2.0"})
    for now in (2, 3, 4):
        rollout_waves.advance(cloud.store, now=now, subjects=subjects)
        agents.running.update(agents.desired)
    assert set(agents.desired.values()) == {"2.0"}
    undone = rollout_control.undo(cloud.store, "default", "tether", now=5, kind="sysapp",
                                subjects=subjects)
    assert undone["phase"] == "rolledBack" and set(agents.desired.values()) == {"1.0"}
