"""What the node reports about its apps: ``reported.apps`` and ``reported.appstats``. Pure.

DESIGN §5: ``reported.apps`` maps app -> version for what the node runs, and
``reported.appstats`` holds per-app status. The rules, decided here:

- ``apps`` holds the version the backend actually applied, running or trying to run
  (a crash-looping app is still reported at its version: its status says the rest). An
  app desired but not applied yet is absent, so the cloud's delta keeps showing it.
- ``appstats`` has an entry for every app desired or running. A running app's entry is
  the backend's ``ObservedApp.wire()``. A desired app that does not run yet is
  ``Pending`` with what it waits for as the cause (fetching, offline). An app with a
  ``Problem`` for its desired version -- a refused fetch, an invalid resource, a failed
  apply -- is ``Failed`` with that cause and the *desired* version, while its instances
  stay those of what still runs (the previous version keeps running when an apply fails).

Usage numbers (each instance's ``cpu`` and ``memory``) change on every look, and a
report that changes every pass is a fleet-wide storm of updates. ``steady_usage`` keeps
them at their last sample between stats ticks (``stats_seconds``), so the report only
changes when something an operator cares about changes.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edge_runtime.backends.base import ObservedApp
from schemas.resources import AppStatus
from schemas.shadow import JSONObject

MAX_RETRY_SECONDS = 300.0
Usage = dict[tuple[str, str], tuple[Any, Any]]
"""(app, instance) -> (cpu, memory) as last sampled."""


@dataclass(frozen=True)
class Problem:
    """Why an app cannot reach ``version`` now, and when the engine tries again.

    ``version`` is the desired version it concerns, or None for an app being removed.
    """

    version: str | None
    cause: str
    retry_at: float
    attempts: int = 1


def backoff(attempts: int, *, base: float, cap: float = MAX_RETRY_SECONDS) -> float:
    """Seconds to wait after ``attempts`` failures in a row: base, 2*base, ... up to cap."""
    return float(min(cap, base * (2 ** min(max(attempts - 1, 0), 30))))


def report_apps(
    desired: Mapping[str, str],
    observed: Mapping[str, ObservedApp],
    *,
    problems: Mapping[str, Problem],
    waiting: Mapping[str, str],
) -> tuple[JSONObject, JSONObject]:
    """``(reported.apps, reported.appstats)`` for this picture."""
    apps: JSONObject = {name: seen.version for name, seen in sorted(observed.items())}
    stats: JSONObject = {}
    for name in sorted(desired.keys() | observed.keys()):
        seen, version = observed.get(name), desired.get(name)
        body: JSONObject
        if seen is not None:
            body = seen.wire()
        else:
            assert version is not None
            cause = waiting.get(name) or f"waiting to apply version {version}"
            body = {"version": version, "status": AppStatus.PENDING.value, "cause": cause,
                    "instances": []}
        problem = problems.get(name)
        if problem is not None and problem.version == version:
            body["status"] = AppStatus.FAILED.value
            body["cause"] = problem.cause
            if version is not None:
                body["version"] = version
        stats[name] = body
    return apps, stats


def steady_usage(appstats: JSONObject, sample: Usage, *, refresh: bool) -> tuple[JSONObject, Usage]:
    """``appstats`` with usage from ``sample`` (or fresh when ``refresh``), and the new sample.

    An instance seen for the first time keeps the numbers it came with until the next
    refresh. Instances that went away leave the sample.
    """
    out: JSONObject = copy.deepcopy(appstats)
    kept: Usage = {}
    for app, body in out.items():
        for instance in body.get("instances", []):
            key = (app, str(instance.get("name")))
            if refresh or key not in sample:
                kept[key] = (instance.get("cpu"), instance.get("memory"))
            else:
                kept[key] = sample[key]
            for field, value in zip(("cpu", "memory"), kept[key]):
                if value is None:
                    instance.pop(field, None)
                else:
                    instance[field] = value
    return out, kept
