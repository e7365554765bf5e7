"""The engine's pure core: the plan, the cache's garbage, and what is reported about apps."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from edge_runtime.backends.base import InstanceStatus, ObservedApp
from edge_runtime.engine.planning import (
    Action,
    Apply,
    Fetch,
    Key,
    Remove,
    app_key,
    garbage,
    plan,
)
from edge_runtime.engine.status import Problem, backoff, report_apps, steady_usage
from schemas.resources import AppStatus

RUNNING, UNKNOWN = AppStatus.RUNNING, AppStatus.UNKNOWN
CFG: Key = ("config", "settings", "c1")
SEC: Key = ("secret", "creds", "s1")
WEB1, WEB2 = app_key("web", "v1"), app_key("web", "v2")
NEEDS: dict[Key, frozenset[Key]] = {WEB1: frozenset({CFG}), WEB2: frozenset({CFG, SEC}),
                                    app_key("db", "v1"): frozenset({CFG})}


def seen(name: str, version: str, status: AppStatus = RUNNING) -> ObservedApp:
    return ObservedApp(name, version, status)


@pytest.mark.parametrize(("desired", "observed", "available", "fetching", "held", "expected"), [
    pytest.param({"web": "v1"}, {}, set(), set(), set(), [Fetch("web", (WEB1,))],
                 id="new app: its spec first"),
    pytest.param({"web": "v1"}, {}, {WEB1}, set(), set(), [Fetch("web", (CFG,))],
                 id="spec cached: then what it pins"),
    pytest.param({"web": "v1"}, {}, {WEB1, CFG}, set(), set(), [Apply("web", "v1")],
                 id="bundle complete: apply"),
    pytest.param({"web": "v2"}, {"web": seen("web", "v1")}, {WEB1, WEB2, CFG}, set(), set(),
                 [Fetch("web", (SEC,))], id="version change, incomplete bundle: fetch"),
    pytest.param({"web": "v2"}, {"web": seen("web", "v1")}, {WEB2, CFG, SEC}, set(), set(),
                 [Apply("web", "v2")], id="version change, complete bundle: apply"),
    pytest.param({"web": "v1"}, {"web": seen("web", "v1")}, {WEB1, CFG}, set(), set(), [],
                 id="observed matches: nothing"),
    pytest.param({"web": "v1"}, {"web": seen("web", "v1")}, set(), set(), set(), [],
                 id="matches even when the cache lost it"),
    pytest.param({"web": "v1"}, {"web": seen("web", "v1", UNKNOWN)}, {WEB1, CFG}, set(), set(),
                 [Apply("web", "v1")], id="backend lost track: apply again"),
    pytest.param({}, {"web": seen("web", "v1")}, set(), set(), set(), [Remove("web")],
                 id="no longer desired: remove"),
    pytest.param({"web": "v1"}, {}, set(), {WEB1}, set(), [], id="already being fetched"),
    pytest.param({"web": "v1"}, {}, {WEB1}, set(), {"web"}, [],
                 id="failed fetch: held until its retry"),
    pytest.param({"web": "v2"}, {"web": seen("web", "v1"), "old": seen("old", "v9")},
                 {WEB2, CFG, SEC}, set(), {"web"}, [Remove("old")],
                 id="a held app does not hold removals"),
    pytest.param({"web": "v1", "db": "v1"}, {}, {WEB1, app_key("db", "v1")}, set(), set(),
                 [Fetch("db", (CFG,))], id="a key two apps need is asked once"),
    pytest.param({"web": "v1", "new": "v1"}, {"gone": seen("gone", "v1")}, {WEB1, CFG}, set(),
                 set(), [Fetch("new", (app_key("new", "v1"),)), Remove("gone"), Apply("web", "v1")],
                 id="order: fetches, removals, applies"),
])
def test_plan(
    desired: dict[str, str], observed: Mapping[str, ObservedApp], available: set[Key],
    fetching: set[Key], held: set[str], expected: list[Action],
) -> None:
    assert plan(desired, observed, available=available, needs=NEEDS, fetching=fetching,
                held=held) == expected


def test_plan_is_deterministic_and_does_not_touch_its_inputs() -> None:
    desired = {"b": "1", "a": "1"}
    first = plan(desired, {}, available=set(), needs={})
    assert first == plan(dict(reversed(desired.items())), {}, available=set(), needs={})
    assert [a.app for a in first] == ["a", "b"] and desired == {"b": "1", "a": "1"}


@pytest.mark.parametrize(("stored", "in_use", "history", "dropped"), [
    pytest.param([WEB1, CFG], {"web": {"v1"}}, 2, [], id="in use: kept with its pins"),
    pytest.param([WEB1, CFG, WEB2, SEC], {}, 2, [WEB1, CFG, WEB2, SEC], id="no app: all go"),
    pytest.param([WEB1, CFG, WEB2, SEC], {"web": {"v2"}}, 0, [WEB1], id="no history"),
    pytest.param([WEB1, CFG, WEB2, SEC], {"web": {"v2"}}, 1, [], id="previous version kept"),
    pytest.param([app_key("web", "v0"), WEB1, CFG, WEB2, SEC], {"web": {"v2"}}, 1,
                 [app_key("web", "v0")], id="only the most recent history"),
    pytest.param([("config", "orphan", "1"), WEB1, CFG], {"web": {"v1"}}, 2,
                 [("config", "orphan", "1")], id="unpinned resources go"),
])
def test_garbage(stored: list[Key], in_use: dict[str, set[str]], history: int,
                 dropped: list[Key]) -> None:
    assert garbage(stored, in_use=in_use, needs=NEEDS, history=history) == dropped


def test_backoff_doubles_from_the_period_up_to_five_minutes() -> None:
    assert [backoff(n, base=10) for n in (1, 2, 3, 5, 9)] == [10, 20, 40, 160, 300]


def test_report_apps_says_what_runs_waits_and_failed() -> None:
    instance = InstanceStatus("main-0", RUNNING, restarts=2, cpu_percent=3.14, memory_bytes=5)
    observed = {"web": ObservedApp("web", "v1", RUNNING, instances=(instance,)),
                "old": seen("old", "v3")}
    desired = {"web": "v2", "new": "v1", "bad": "v4"}
    problems = {"web": Problem("v2", "image-only service needs the kube backend", 0.0),
                "bad": Problem("v4", "cannot fetch app bad@v4: 404", 0.0),
                "new": Problem("v0", "an old version's problem", 0.0)}
    apps, stats = report_apps(desired, observed, problems=problems,
                              waiting={"new": "fetching app new@v1"})
    assert apps == {"old": "v3", "web": "v1"}  # what the backend applied, nothing else
    assert stats["web"] == {"version": "v2", "status": "Failed",
                            "cause": "image-only service needs the kube backend",
                            "instances": [instance.wire()]}  # v1 keeps running
    assert stats["new"] == {"version": "v1", "status": "Pending",
                            "cause": "fetching app new@v1", "instances": []}
    assert stats["bad"]["status"] == "Failed" and stats["old"]["status"] == "Running"


def test_usage_stays_at_its_sample_until_a_refresh() -> None:
    def stats(cpu: float, memory: int) -> dict[str, object]:
        return {"web": {"instances": [{"name": "main-0", "cpu": cpu, "memory": memory}]}}

    first, sample = steady_usage(stats(1.0, 100), {}, refresh=False)
    assert first == stats(1.0, 100)  # a new instance keeps the numbers it came with
    later, sample = steady_usage(stats(7.0, 900), sample, refresh=False)
    assert later == stats(1.0, 100)
    fresh, sample = steady_usage(stats(7.0, 900), sample, refresh=True)
    assert fresh == stats(7.0, 900)
    assert steady_usage({}, sample, refresh=False)[1] == {}  # gone instances leave
