"""The engine: makes the node run its desired apps, level-triggered, online or not.

It is the ``Reconciler`` of ``ShadowSync`` and owns one thread. A *pass* observes the
backend, plans with the pure ``planning.plan``, carries the actions out (``acting``:
``resources/get`` for what the cache lacks, ``backend.remove``/``apply`` for the rest),
observes again and hands the full reported state to the ``ReportSink`` if it changed
(``reporting``). Passes run when the desired section changes (``reconcile`` returns the
state true right now and wakes the thread: a burst of changes makes one pass), when the
backend has news (``wake``, e.g. a process exited; ``on_observed`` then hears of the
change, which is how crashes become events), when a ``resources/get`` answer
arrives (``on_resources``), every ``reconcile_seconds``, when a retry or a fetch timeout
is due, and every second while a fetch waits for the broker to come back.

Nothing a backend or the cloud does stops the engine: a ``BackendError`` (or a backend's
bug) fails that app -- ``Failed`` with the cause -- until the error's ``retry_after`` or
the next period; a refused fetch fails the app and is asked again with backoff. A failure
is forgotten when the app's desired version changes or what runs matches it.

Reported sections other parts own (the upgrader's ``sysapps``) come from ``sections``, asked
at every report; ``wake`` after they change.

Threads: ``reconcile`` and ``on_resources`` run on the sync thread, which owns the cache;
so the cache's garbage (``planning.garbage``: resource versions no desired or running app
needs, beyond a short history) is collected there, when desired changes or an answer
arrives. Before the first desired section is known (a new node with an empty cache) the
engine only observes and reports: it never removes what it cannot know to be unwanted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

from edge_runtime.backends.base import Backend, ObservedApp
from edge_runtime.cache import Cache
from edge_runtime.engine.acting import Actor, InFlight, Request, Requester
from edge_runtime.engine.planning import Key, app_key, desired_apps, garbage, matches, plan
from edge_runtime.engine.reporting import Reporter
from edge_runtime.engine.resources import Parsed, ResourceStore, describe, parse_items
from edge_runtime.engine.status import Problem
from edge_runtime.errors import BackendError
from edge_runtime.incoming import parse_refusal
from edge_runtime.reconciling import ReportSink
from schemas.shadow import JSONObject
from schemas.topics import Suffix

log = logging.getLogger(__name__)

OFFLINE_POLL_SECONDS = 1.0


ObservedHook = Callable[[dict[str, ObservedApp], dict[str, ObservedApp]], None]


@runtime_checkable
class Watchable(Protocol):
    """A backend that tells when what it observes changed (the native supervisor does)."""

    def watch(self, listener: Callable[[], None]) -> None: ...


class Engine:
    """Reconciles desired apps with a backend; the ``Reconciler`` hook of the sync."""

    def __init__(
        self,
        backend: Backend,
        cache: Cache,
        *,
        sink: ReportSink,
        data_dir: Path,
        reconcile_seconds: float = 10.0,
        stats_seconds: float = 30.0,
        fetch_timeout_seconds: float = 2.0,
        history: int = 2,
        stats: Callable[[], JSONObject] | None = None,
        sections: Callable[[], JSONObject] | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_observed: ObservedHook | None = None,
    ) -> None:
        self._backend, self._sink, self._clock = backend, sink, clock
        self._on_observed = on_observed  # (previous, current) after every new observation
        self._period, self._stats_period, self._history = reconcile_seconds, stats_seconds, history
        self._reporter = Reporter(backend, data_dir, stats=stats, sections=sections)
        self._store = ResourceStore(cache)
        self._lock = threading.RLock()
        self._wakeup = threading.Condition(self._lock)
        self._inflight = InFlight(timeout=fetch_timeout_seconds)
        self._problems: dict[str, Problem] = {}
        self._waiting: dict[str, str] = {}
        self._actor = Actor(backend, self._store, inflight=self._inflight, problems=self._problems,
                            waiting=self._waiting, lock=self._lock, period=reconcile_seconds)
        self._desired: dict[str, str] | None = None
        self._observe_error = ""
        self._observed: dict[str, ObservedApp] = self._observe() or {}  # e.g. adopted processes
        now = clock()
        self._period_due, self._stats_due = now, now
        self._woken, self._stopping = False, False
        self._thread: threading.Thread | None = None
        if isinstance(backend, Watchable):
            backend.watch(self.wake)

    # -- wiring and lifecycle ------------------------------------------------------------
    def bind(self, request: Requester) -> None:
        """How to publish ``resources/get`` (``ShadowSync.request_resources``)."""
        self._actor.request = request

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="tether-edge-engine", daemon=True)
        self._thread.start()

    def stop(self, *, timeout: float = 30.0) -> None:
        with self._wakeup:
            self._stopping = True
            self._wakeup.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("the engine did not stop within %g s", timeout)
            self._thread = None

    def wake(self) -> None:
        """Run a pass soon; safe from any thread (backend events use it)."""
        with self._wakeup:
            self._woken = True
            self._wakeup.notify_all()

    # -- the Reconciler hook and the resources handler (sync thread) ---------------------
    def reconcile(self, desired: JSONObject) -> JSONObject:
        apps, skipped = desired_apps(desired.get("apps"))
        for name in skipped:
            log.warning("ignored desired.apps entry %s: an app needs a DNS-1123 name and a "
                        "version string", name)
        properties = desired.get("properties")
        with self._lock:
            before = self._desired or {}
            changed = {n for n in before.keys() | apps.keys() if before.get(n) != apps.get(n)}
            for name in changed:
                self._waiting.pop(name, None)
                problem = self._problems.get(name)
                if problem is not None and problem.version != apps.get(name):
                    del self._problems[name]
            self._desired = apps
            self._reporter.deliver_properties(properties)
            self._collect_garbage()
            snapshot = self._compose()
        self.wake()
        return snapshot

    def on_resources(self, suffix: Suffix, payload: JSONObject) -> None:
        """A ``resources/get`` answer: store what is needed, fail the app it was refused to."""
        try:
            with self._lock:
                request = self._inflight.answered(payload.get("clientToken"))
                desired = self._desired or {}
                if request is not None and desired.get(request.app) != request.version:
                    request = None  # asked for a version no longer desired
                if suffix is Suffix.RESOURCES_GET_REJECTED:
                    if request is not None:
                        refusal = parse_refusal(payload)
                        cause = (f"cannot fetch {describe(request.items[0])}: the cloud refused "
                                 f"resources/get ({refusal.code}: {refusal.message})")
                        self._actor.fetch_failed(request, cause, now=self._clock())
                else:
                    self._take(parse_items(payload.get("items")), request, desired)
                self._collect_garbage()
        except Exception:  # an answer must never break the sync thread
            log.exception("failed to handle a resources/get answer")
        self.wake()

    # -- one pass --------------------------------------------------------------------------
    def run_once(self) -> None:
        """Observe, plan, act, observe, report (if changed). The thread's body; tests call it."""
        now = self._clock()
        with self._lock:
            self._period_due = now + self._period
            refresh = now >= self._stats_due
            if refresh:
                self._stats_due = now + self._stats_period
            for request in self._inflight.expire(now):
                log.info("no answer to resources/get for %s yet; asking again", request.app)
            self._actor.offline = False
            desired = None if self._desired is None else dict(self._desired)
        nodestats = self._reporter.sample() if refresh else None
        observed = self._observe()
        if observed is not None and desired is not None:
            with self._lock:
                held = {name for name, p in self._problems.items() if p.retry_at > now}
                actions = plan(desired, observed, available=self._store.keys(),
                               needs=self._store.needs(), fetching=self._inflight.keys(),
                               held=held)
            if actions:
                log.debug("plan: %s", actions)
                self._actor.act(actions, desired, now=now)
                again = self._observe()
                observed = observed if again is None else again
        with self._lock:
            previous = self._observed
            if observed is not None:
                self._observed = observed
                self._settle()
            report = self._compose(nodestats=nodestats, refresh=refresh)
            changed = self._reporter.changed(report)
        if observed is not None and self._on_observed is not None:
            self._on_observed(previous, observed)
        if changed:
            self._sink(report)

    def next_due(self) -> float:
        """When the next pass is due, if nothing wakes the engine earlier."""
        with self._lock:
            now = self._clock()
            dues = [self._period_due, self._stats_due]
            dues += [p.retry_at for p in self._problems.values() if p.retry_at > now]
            expiry = self._inflight.next_expiry()
            if expiry is not None:
                dues.append(expiry)
            if self._actor.offline:
                dues.append(now + OFFLINE_POLL_SECONDS)
            return min(dues)

    # -- helpers ---------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._wakeup:
                if not self._woken and not self._stopping:
                    self._wakeup.wait(max(0.01, self.next_due() - self._clock()))
                if self._stopping:
                    return
                self._woken = False
            try:
                self.run_once()
            except Exception:  # a pass that fails must not end the node's engine
                log.exception("an engine pass failed")

    def _observe(self) -> dict[str, ObservedApp] | None:
        """What the backend runs; None (logged once per distinct error) if it cannot say."""
        try:
            observed = self._backend.observe()
        except Exception as exc:  # noqa: BLE001 -- BackendError or a backend bug: never crash
            error = str(exc)
            level = logging.WARNING if isinstance(exc, BackendError) else logging.ERROR
            log.log(level if error != self._observe_error else logging.DEBUG,
                    "cannot observe the %s backend: %s", self._backend.name, error)
            self._observe_error = error
            return None
        if self._observe_error:
            log.info("the %s backend can be observed again", self._backend.name)
            self._observe_error = ""
        return observed

    def _take(
        self, answered: list[Parsed], request: Request | None, desired: dict[str, str]
    ) -> None:
        """Store the answered items some desired app needs; fail what the answer lacks."""
        needs = self._store.needs()
        wanted = set(request.items if request is not None else ())
        for name, version in desired.items():
            wanted.add(app_key(name, version))
            wanted.update(needs.get(app_key(name, version), ()))
        errors: list[str] = []
        got: set[Key] = set()
        for parsed in answered:
            if parsed.key not in wanted:
                continue
            if parsed.model is None:
                errors.append(parsed.error)
                continue
            self._store.put(parsed)
            got.add(parsed.key)
        if request is not None:
            lacking = [key for key in request.items if key not in got]
            if errors or lacking:
                cause = errors[0] if errors else f"the cloud's answer lacked {describe(lacking[0])}"
                self._actor.fetch_failed(request, cause, now=self._clock())
            else:
                self._waiting.pop(request.app, None)

    def _settle(self) -> None:
        """Forget problems and waits that what now runs (or no longer runs) resolved."""
        desired = self._desired or {}
        for name, problem in list(self._problems.items()):
            seen, version = self._observed.get(name), desired.get(name)
            removed = version is None and seen is None
            resolved = version is not None and problem.version == version and matches(seen, version)
            if removed or resolved:
                del self._problems[name]
        for name in list(self._waiting):
            if name not in desired or matches(self._observed.get(name), desired[name]):
                del self._waiting[name]

    def _compose(self, *, nodestats: JSONObject | None = None, refresh: bool = False) -> JSONObject:
        return self._reporter.compose(self._desired or {}, self._observed, problems=self._problems,
                                      waiting=self._waiting, nodestats=nodestats, refresh=refresh)

    def _collect_garbage(self) -> None:
        in_use: dict[str, set[str]] = {}
        for name, version in (self._desired or {}).items():
            in_use.setdefault(name, set()).add(version)
        for name, seen in self._observed.items():
            in_use.setdefault(name, set()).add(seen.version)
        drop = garbage(self._store.stored(), in_use=in_use, needs=self._store.needs(),
                       history=self._history)
        if drop:
            log.info("dropping %d resource versions no app needs from the cache", len(drop))
            self._store.drop(drop)
