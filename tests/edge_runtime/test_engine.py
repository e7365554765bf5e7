"""The engine with a fake backend, a fake clock and an in-memory cloud answering
``resources/get``: passes are run by hand (``run_once``), no thread, no broker."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_runtime.backends.base import InstanceStatus, ObservedApp
from edge_runtime.cache import Cache, ResourceKey
from edge_runtime.engine import Engine
from edge_runtime.errors import BackendError
from schemas.resources import App, AppStatus, Config, Secret
from schemas.shadow import JSONObject
from tests.edge_runtime.fakes import FakeBackend, FakeClock
from tests.edge_runtime.resourcecloud import Catalog

SETTINGS = Config(name="settings", data={"mode": "eco"})
CREDS = Secret(name="creds", data={"token": "t0p"})


def web(version_of_settings: str = "c1") -> App:
    return App.model_validate({
        "name": "web",
        "services": [{"name": "api", "command": ["serve"],
                      "volumeMounts": [{"name": "cfg", "mountPath": "/etc/web"}]}],
        "volumes": [{"name": "cfg", "config": {"name": "settings", "version": version_of_settings}},
                    {"name": "sec", "secret": {"name": "creds", "version": "s1"}}],
    })


class Node:
    """An engine as the agent wires it, with every seam replaced by something to look at."""

    def __init__(self, data_dir: Path, catalog: Catalog) -> None:
        self.data_dir, self.catalog = data_dir, catalog
        self.cache = Cache(data_dir)
        self.backend = FakeBackend()
        self.clock = FakeClock()
        self.reports: list[JSONObject] = []
        self.sent: list[tuple[str, list[JSONObject]]] = []
        self.online = True
        self.engine = Engine(self.backend, self.cache, sink=self.reports.append, data_dir=data_dir,
                             reconcile_seconds=10, stats_seconds=30, fetch_timeout_seconds=2,
                             stats=lambda: {"cpu": 1.5}, clock=self.clock)
        self.engine.bind(self.request)

    def request(self, items: list[JSONObject]) -> str | None:
        if not self.online:
            return None
        token = f"r{len(self.sent)}"
        self.sent.append((token, items))
        return token

    def answer(self, *, drop: bool = False) -> int:
        """Answer (or lose) every request not answered yet, as the cloud would; how many."""
        pending, self._answered = self.sent[getattr(self, "_answered", 0):], len(self.sent)
        for token, items in pending:
            if not drop:
                answer = self.catalog.answer({"clientToken": token, "items": items})
                self.engine.on_resources(*answer)
        return len(pending)

    def converge(self) -> None:
        """Passes and answers until the engine asks for nothing more."""
        for _ in range(10):
            self.engine.run_once()
            if not self.answer():
                return
        raise AssertionError("the engine kept fetching")

    @property
    def reported(self) -> JSONObject:
        return self.reports[-1]

    def stat(self, app: str) -> Any:
        return self.reported["appstats"][app]


@pytest.fixture
def catalog() -> Catalog:
    catalog = Catalog()
    for version in ("v1", "v2"):
        catalog.add(web(), version)
    catalog.add(SETTINGS, "c1")
    catalog.add(CREDS, "s1")
    return catalog


@pytest.fixture
def node(tmp_path: Path, catalog: Catalog) -> Iterator[Node]:
    made = Node(tmp_path, catalog)
    yield made
    made.cache.close()


def test_a_desired_app_is_fetched_whole_then_applied_and_reported(node: Node) -> None:
    snapshot = node.engine.reconcile({"apps": {"web": "v1"}})
    assert snapshot["appstats"]["web"]["status"] == "Pending" and snapshot["apps"] == {}
    node.engine.run_once()
    assert node.sent[-1][1] == [{"kind": "app", "name": "web", "version": "v1"}]
    assert node.stat("web")["cause"] == "fetching app web@v1"
    node.answer()
    node.engine.run_once()  # the spec names what it pins: asked in one request
    assert sorted(i["kind"] for i in node.sent[-1][1]) == ["config", "secret"]
    node.answer()
    node.engine.run_once()
    bundle = node.backend.bundles["web"]
    assert (bundle.version, bundle.configs, bundle.secrets) == (
        "v1", {"settings": SETTINGS}, {"creds": CREDS})
    assert node.reported["apps"] == {"web": "v1"}
    assert node.stat("web") == {"version": "v1", "status": "Running", "instances": [
        {"name": "web-0", "status": "Running", "restarts": 0, "cpu": 1.0, "memory": 1000}]}
    assert (node.reported["node"]["backend"], node.reported["node"]["fakeVersion"]) == ("fake", "1")
    assert node.reported["nodestats"] == {"cpu": 1.5}
    cached = {key for key in node.cache.resource_keys()}
    assert ResourceKey("config", "settings", "c1") in cached


def test_nothing_happens_when_what_runs_matches(node: Node) -> None:
    node.engine.reconcile({"apps": {"web": "v1"}})
    node.converge()
    calls, reports, requests = list(node.backend.calls), len(node.reports), len(node.sent)
    for _ in range(3):
        node.clock.advance(10)
        node.engine.run_once()
    assert (node.backend.calls, len(node.reports), len(node.sent)) == (calls, reports, requests)


def test_a_new_version_is_applied_and_an_undesired_app_removed(node: Node) -> None:
    node.engine.reconcile({"apps": {"web": "v1"}})
    node.converge()
    node.engine.reconcile({"apps": {"web": "v2"}})
    node.converge()
    assert node.reported["apps"] == {"web": "v2"}
    assert len(node.sent) == 3  # v2's spec only: what it pins is cached already
    node.engine.reconcile({"apps": {}})
    node.engine.run_once()
    assert node.backend.calls[-1] == ("remove", "web")
    assert node.reported["apps"] == {} and node.reported["appstats"] == {}
    node.engine.reconcile({"apps": {}, "properties": {}})  # the cache is collected on changes
    assert node.cache.resource_keys() == []  # no app needs anything: the cache is emptied


def test_a_refused_fetch_fails_the_app_and_is_asked_again_with_backoff(node: Node) -> None:
    node.engine.reconcile({"apps": {"web": "v3"}})  # the cloud has no v3
    node.converge()
    assert node.stat("web") == {
        "version": "v3", "status": "Failed", "instances": [],
        "cause": "cannot fetch app web@v3: the cloud refused resources/get "
                 "(404: no app web at version v3)"}
    asked = len(node.sent)
    node.clock.advance(9)
    node.engine.run_once()
    assert len(node.sent) == asked  # held until the retry, 10 s (the period) later
    node.clock.advance(1)
    node.engine.run_once()
    node.answer()
    assert len(node.sent) == asked + 1
    node.clock.advance(10)
    node.engine.run_once()
    assert len(node.sent) == asked + 1  # the second refusal waits twice as long
    node.catalog.add(web(), "v3")  # the cloud gets it: the next retry succeeds
    node.clock.advance(10)
    node.converge()
    assert node.stat("web")["status"] == "Running" and "cause" not in node.stat("web")


def test_an_invalid_resource_fails_the_app(node: Node) -> None:
    node.catalog.values[("app", "web", "v9")] = {"name": "web", "services": []}
    node.engine.reconcile({"apps": {"web": "v9"}})
    node.converge()
    assert node.stat("web")["status"] == "Failed"
    assert node.stat("web")["cause"].startswith("the cloud sent an invalid app web@v9: services")
    assert node.cache.resource_keys() == []


def test_an_apply_error_fails_the_app_and_is_retried_at_its_retry_after(node: Node) -> None:
    node.backend.failures["web"] = BackendError("the cluster is busy", retry_after=3)
    node.engine.reconcile({"apps": {"web": "v1"}})
    node.converge()
    assert node.stat("web")["status"] == "Failed"
    assert node.stat("web")["cause"] == "the cluster is busy"
    assert node.reported["apps"] == {}
    assert node.engine.next_due() == node.clock() + 3
    node.clock.advance(2)
    node.engine.run_once()
    assert node.backend.calls.count(("apply", "web@v1")) == 1
    del node.backend.failures["web"]
    node.clock.advance(1)
    node.engine.run_once()
    assert node.stat("web")["status"] == "Running" and node.reported["apps"] == {"web": "v1"}


def test_a_failed_new_version_leaves_the_old_one_running_and_says_why(node: Node) -> None:
    node.engine.reconcile({"apps": {"web": "v1"}})
    node.converge()
    node.backend.failures["web"] = BackendError("image-only service needs the kube backend")
    node.engine.reconcile({"apps": {"web": "v2"}})
    node.converge()
    assert node.reported["apps"] == {"web": "v1"}
    assert node.stat("web")["version"] == "v2" and node.stat("web")["status"] == "Failed"
    assert node.stat("web")["instances"][0]["status"] == "Running"


def test_a_backend_that_cannot_observe_or_remove_does_not_stop_the_engine(node: Node) -> None:
    node.engine.reconcile({"apps": {"web": "v1"}})
    node.converge()
    node.backend.failures["web"] = BackendError("permission denied")
    node.engine.reconcile({"apps": {}})
    node.engine.run_once()
    assert node.stat("web")["status"] == "Failed"
    assert node.stat("web")["cause"] == "cannot remove: permission denied"
    def broken() -> dict[str, ObservedApp]:
        raise RuntimeError("a bug in a backend")

    node.backend.observe = broken  # type: ignore[method-assign]
    node.clock.advance(10)
    node.engine.run_once()  # logged, not raised


def test_offline_the_app_waits_and_is_fetched_as_soon_as_the_cloud_is_back(node: Node) -> None:
    node.online = False
    node.engine.reconcile({"apps": {"web": "v1"}})
    node.engine.run_once()
    assert node.stat("web")["cause"] == "waiting for app web@v1: the cloud is unreachable"
    assert node.engine.next_due() == node.clock() + 1  # looks again every second
    node.online = True
    node.clock.advance(1)
    node.converge()
    assert node.reported["apps"] == {"web": "v1"}


def test_an_unanswered_fetch_is_asked_again_after_the_timeout(node: Node) -> None:
    node.engine.reconcile({"apps": {"web": "v1"}})
    node.engine.run_once()
    node.answer(drop=True)
    node.clock.advance(1)
    node.engine.run_once()
    assert len(node.sent) == 1
    node.clock.advance(1)
    node.engine.run_once()
    assert len(node.sent) == 2 and node.sent[1][1] == node.sent[0][1]


def test_a_restarted_node_applies_from_its_cache_alone(tmp_path: Path, catalog: Catalog) -> None:
    first = Node(tmp_path, catalog)
    first.engine.reconcile({"apps": {"web": "v1"}})
    first.converge()
    first.cache.close()
    second = Node(tmp_path, Catalog())  # a fresh backend, and a cloud that knows nothing
    second.online = False
    second.engine.reconcile({"apps": {"web": "v1"}})
    second.engine.run_once()
    assert second.sent == [] and second.backend.bundles["web"].configs == {"settings": SETTINGS}
    assert second.reported["apps"] == {"web": "v1"}
    second.cache.close()


def test_old_versions_leave_the_cache_beyond_a_short_history(node: Node) -> None:
    for version in ("v1", "v2", "v3", "v4"):
        node.catalog.add(web(), version)
        node.engine.reconcile({"apps": {"web": version}})
        node.converge()
    node.engine.reconcile({"apps": {"web": "v4"}, "properties": {}})
    apps = sorted(k.version for k in node.cache.resource_keys() if k.kind == "app")
    assert apps == ["v2", "v3", "v4"]  # running v4, and the two before it


def test_properties_are_delivered_as_a_file_and_mirrored(node: Node) -> None:
    path = node.data_dir / "properties.json"
    reported = node.engine.reconcile({"properties": {"fan": "on", "limits": {"max": 3}}})
    assert reported["properties"] == {"fan": "on", "limits": {"max": 3}}
    assert json.loads(path.read_text()) == {"fan": "on", "limits": {"max": 3}}
    assert path.stat().st_mode & 0o777 == 0o644
    reported = node.engine.reconcile({"apps": {}})
    assert "properties" not in reported and json.loads(path.read_text()) == {}


def test_usage_only_changes_the_report_at_stats_ticks(node: Node) -> None:
    node.engine.reconcile({"apps": {"web": "v1"}})
    node.converge()
    reports = len(node.reports)
    busy = InstanceStatus("web-0", AppStatus.RUNNING, cpu_percent=80.0, memory_bytes=9000)
    node.backend.apps["web"] = ObservedApp("web", "v1", AppStatus.RUNNING, instances=(busy,))
    node.clock.advance(10)
    node.engine.run_once()
    assert len(node.reports) == reports
    node.clock.advance(20)
    node.engine.run_once()
    assert node.stat("web")["instances"][0]["cpu"] == 80.0


@pytest.mark.parametrize("apps", [["web"], "web", {"Web!": "v1", "web": 3}])
def test_malformed_desired_apps_are_ignored(node: Node, apps: object) -> None:
    assert node.engine.reconcile({"apps": apps})["appstats"] == {}


def test_backend_events_wake_the_engine_thread(node: Node) -> None:
    node.engine.reconcile({"apps": {"web": "v1"}})
    node.converge()
    reported = threading.Event()
    node.engine._sink = (  # type: ignore[assignment]
        lambda state: reported.set() if state["appstats"]["web"]["status"] == "Failed" else None)
    node.engine.start()
    try:
        crashing = ObservedApp("web", "v1", AppStatus.FAILED, "crashing: exit code 1")
        node.backend.apps["web"] = crashing
        assert node.backend.listener is not None
        node.backend.listener()  # the period is 10 s of a clock that never moves
        assert reported.wait(2), "the event did not cause a pass"
    finally:
        node.engine.stop()
