"""What a simulated node runs: the agent engine's side of the protocol, without a backend.

The engine (``edge_runtime.engine``) turns the desired apps into ``resources/get``
requests and running apps; the simulator keeps its rules and drops the processes:

- an app no longer desired stops at once; one whose version, and everything that version
  pins, was fetched "runs"; one that lacks something is fetched with one request, unless a
  request for it is in flight or a refused fetch holds it until its retry;
- a request unanswered after ``fetch_timeout`` (2 s) is forgotten and asked again;
- a refused fetch (or an answer lacking an item) fails the app -- ``Failed`` with the
  cause -- and holds it for the engine's backoff (10 s, doubling);
- ``report`` gives ``reported.apps`` and ``reported.appstats`` as ``engine.status``
  composes them: ``Running`` with its instances, ``Pending`` while fetching, ``Failed``;
- a node told to fail an app version (``fail``) runs it and reports it as the native
  backend reports a process that keeps exiting: ``Failed``, with a cause and restarts,
  so rollouts gated on reported health can be tried on a simulated fleet.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from edge_runtime.engine.status import backoff
from launcher.fleet.catalog import AppCatalog, Key
from schemas.shadow import JSONObject

Fetcher = Callable[[list[JSONObject]], str | None]
"""Publishes a ``resources/get`` for the items; its clientToken, or None when offline."""


@dataclass
class _Fetch:
    app: str
    version: str
    items: tuple[Key, ...]
    sent_at: float


@dataclass
class _Problem:
    version: str
    cause: str
    retry_at: float
    attempts: int


class NodeApps:
    """One node's running apps, fetched resources and fetches in flight."""

    def __init__(
        self, catalog: AppCatalog, *, fetch_timeout: float, backoff_base: float,
        clock: Callable[[], float],
    ) -> None:
        self._catalog, self._clock = catalog, clock
        self._fetch_timeout, self._backoff_base = fetch_timeout, backoff_base
        self.running: dict[str, str] = {}
        self._have: set[Key] = set()
        self._fetching: dict[str, _Fetch] = {}
        self._problems: dict[str, _Problem] = {}
        self._retry_due: float | None = None  # the first refused fetch to ask again
        self.failing: set[tuple[str, str]] = set()  # (app, version) that crash when run

    def fail(self, name: str, version: str) -> None:
        """Make ``version`` of app ``name`` crash whenever this node runs it."""
        self.failing.add((name, version))

    def reconcile(self, desired: dict[str, str], fetch: Fetcher) -> None:
        """Stop what is no longer desired, run what is fetched, fetch what is missing."""
        now = self._clock()
        for name in [name for name in self.running if name not in desired]:
            del self.running[name]
        for name in [n for n, p in self._problems.items() if p.version != desired.get(n)]:
            del self._problems[name]  # the agent forgets a problem when desired moves on
        fetching = {key for request in self._fetching.values() for key in request.items}
        for name, version in desired.items():
            if self.running.get(name) == version:
                continue
            missing = [key for key in self._catalog.needs(name, version) if key not in self._have]
            if not missing:
                self.running[name] = version
                self._problems.pop(name, None)
                continue
            problem = self._problems.get(name)
            held = problem is not None and problem.version == version and problem.retry_at > now
            if held or fetching.intersection(missing):
                continue
            token = fetch([{"kind": kind, "name": item, "version": ver}
                           for kind, item, ver in missing])
            if token is not None:
                self._fetching[token] = _Fetch(name, version, tuple(missing), now)
        retries = [p.retry_at for p in self._problems.values() if p.retry_at > now]
        self._retry_due = min(retries, default=None)

    def answered(self, token: object, items: object, *, mark: Callable[[str], None]) -> None:
        """A ``resources/get/accepted``: keep what it brings; fail the app if it lacks any."""
        request = self._fetching.pop(token, None) if isinstance(token, str) else None
        got: set[Key] = set()
        for item in items if isinstance(items, list) else ():
            if isinstance(item, dict) and isinstance(item.get("value"), dict):
                key: Key = (str(item.get("kind")), str(item.get("name")), str(item.get("version")))
                if key[0] == "app":
                    self._catalog.learn(key[1], key[2], item["value"])
                    mark(f"fetched:{key[1]}@{key[2]}")
                got.add(key)
        self._have |= got
        if request is not None:
            lacking = [key for key in request.items if key not in got]
            if lacking:
                self._fail(request, f"the cloud's answer lacked {lacking[0]}")

    def refused(self, token: object, cause: str, desired: dict[str, str]) -> bool:
        """A ``resources/get/rejected``; True if it failed an app still desired."""
        request = self._fetching.pop(token, None) if isinstance(token, str) else None
        if request is None or desired.get(request.app) != request.version:
            return False
        self._fail(request, cause)
        return True

    def due(self, now: float) -> tuple[int, bool]:
        """Forget the fetches overdue: (how many, whether a reconcile is due now)."""
        expired = [token for token, request in self._fetching.items()
                   if now >= request.sent_at + self._fetch_timeout] if self._fetching else []
        for token in expired:
            del self._fetching[token]
        retry = self._retry_due is not None and now >= self._retry_due
        return len(expired), bool(expired) or retry

    def report(self, desired: dict[str, str]) -> tuple[JSONObject, JSONObject]:
        """``(reported.apps, reported.appstats)``, as the agent's ``report_apps``."""
        stats: JSONObject = {}
        for name in sorted(desired.keys() | self.running.keys()):
            running, version = self.running.get(name), desired.get(name)
            body: JSONObject
            if running is not None and (name, running) in self.failing:
                body = {"version": running, "status": "Failed",
                        "cause": "exited with code 1 (simulated crash); restarting",
                        "instances": [{**instance, "status": "Failed", "restarts": 3}
                                      for instance in self._catalog.instances(name, running)]}
            elif running is not None:
                body = {"version": running, "status": "Running",
                        "instances": self._catalog.instances(name, running)}
            else:
                body = {"version": version, "status": "Pending",
                        "cause": f"fetching app {name}@{version}", "instances": []}
            problem = self._problems.get(name)
            if problem is not None and problem.version == version:
                body = {**body, "version": version, "status": "Failed", "cause": problem.cause}
            stats[name] = body
        return dict(self.running), stats

    def _fail(self, request: _Fetch, cause: str) -> None:
        before = self._problems.get(request.app)
        attempts = before.attempts + 1 if before is not None and before.version == request.version else 1
        retry_at = self._clock() + backoff(attempts, base=self._backoff_base)
        self._problems[request.app] = _Problem(request.version, cause, retry_at, attempts)
        self._retry_due = retry_at if self._retry_due is None else min(self._retry_due, retry_at)
