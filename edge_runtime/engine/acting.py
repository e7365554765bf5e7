"""Carrying a plan out: the only place the engine touches the backend and the cloud.

``Actor.act`` takes the actions of one pass in order. A ``Fetch`` publishes one
``resources/get`` through the sync (``ShadowSync.request_resources``) and records it as
in flight -- under the engine's lock, so that an answer racing in on the sync thread
always finds its request. Offline, nothing is published: the app waits, with a cause
that says so, and the engine looks again every second. ``Apply`` assembles the bundle
from the cache and hands it to ``backend.apply``; ``Remove`` calls ``backend.remove``.

Failures become ``Problem``s, never exceptions: the app is reported ``Failed`` with the
cause and held until the retry is due -- a backend's ``retry_after`` or the next period
for backend errors, exponential backoff from the period (capped at five minutes) for a
fetch the cloud refused or answered with something invalid. A cause seen again is
logged at debug level only, so a broken app does not flood the log every period.

``resources/get`` (DESIGN §4) answers with the items and their values, or refuses with
an error that names no item, so one ``Fetch`` -- one app -- is one request: a refusal
says exactly which app cannot get what it needs. ``InFlight`` forgets a request when its
answer comes or ``timeout`` passes (the next pass asks again); a late answer is still
used, since a version's content never changes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial

from edge_runtime.backends.base import Backend
from edge_runtime.engine.planning import Action, Apply, Fetch, Key, Remove
from edge_runtime.engine.resources import ResourceStore, describe
from edge_runtime.engine.status import Problem, backoff
from edge_runtime.errors import BackendError
from schemas.shadow import JSONObject

log = logging.getLogger(__name__)

Requester = Callable[[list[JSONObject]], str | None]
"""``ShadowSync.request_resources``: publishes a request, returns its token (None offline)."""


@dataclass(frozen=True)
class Request:
    """One ``resources/get`` in flight, on behalf of ``app`` at ``version``."""

    app: str
    version: str
    items: tuple[Key, ...]
    sent_at: float


def request_items(items: Iterable[Key]) -> list[JSONObject]:
    """The ``items`` of a ``resources/get`` request."""
    return [{"kind": kind, "name": name, "version": version} for kind, name, version in items]


class InFlight:
    """Requests sent and not yet answered, by clientToken."""

    def __init__(self, *, timeout: float) -> None:
        self.timeout = timeout
        self._requests: dict[str, Request] = {}

    def sent(self, token: str, request: Request) -> None:
        self._requests[token] = request

    def answered(self, token: object) -> Request | None:
        """The request ``token`` answers (no longer in flight), or None if unknown."""
        return self._requests.pop(token, None) if isinstance(token, str) else None

    def keys(self) -> frozenset[Key]:
        """Every item asked for and not answered yet."""
        return frozenset(key for request in self._requests.values() for key in request.items)

    def expire(self, now: float) -> list[Request]:
        """Forget the requests whose answer is overdue; returns them."""
        overdue = [t for t, r in self._requests.items() if now >= r.sent_at + self.timeout]
        return [self._requests.pop(token) for token in overdue]

    def next_expiry(self) -> float | None:
        return min((r.sent_at + self.timeout for r in self._requests.values()), default=None)


def _items_text(items: Sequence[Key]) -> str:
    more = f" and {len(items) - 1} more" if len(items) > 1 else ""
    return f"{describe(items[0])}{more}"


class Actor:
    """Carries out the actions of a plan; the engine's state is shared, guarded by ``lock``."""

    def __init__(
        self,
        backend: Backend,
        store: ResourceStore,
        *,
        inflight: InFlight,
        problems: dict[str, Problem],
        waiting: dict[str, str],
        lock: threading.RLock,
        period: float,
    ) -> None:
        self._backend, self._store, self._inflight = backend, store, inflight
        self._problems, self._waiting = problems, waiting
        self._lock, self._period = lock, period
        self.request: Requester | None = None
        self.offline = False  # a fetch could not be sent this pass

    def act(self, actions: Sequence[Action], desired: dict[str, str], *, now: float) -> None:
        for action in actions:
            if isinstance(action, Fetch):
                self._fetch(action, desired[action.app], now=now)
            elif isinstance(action, Remove):
                self._call(action.app, None, now=now, do=partial(self._backend.remove, action.app))
            elif isinstance(action, Apply):
                self._call(action.app, action.version, now=now, do=partial(self._apply, action))

    def fetch_failed(self, request: Request, cause: str, *, now: float) -> None:
        """The cloud refused or botched a fetch: fail the app, ask again with backoff."""
        with self._lock:
            attempts = self._attempts(request.app, request.version)
            retry_at = now + backoff(attempts, base=self._period)
            self._record(request.app, Problem(request.version, cause, retry_at, attempts))
            self._waiting.pop(request.app, None)

    # -- helpers ---------------------------------------------------------------------------
    def _fetch(self, action: Fetch, version: str, *, now: float) -> None:
        with self._lock:  # held while publishing: the answer must find the request recorded
            token: str | None = None
            if self.request is not None:
                try:
                    token = self.request(request_items(action.items))
                except Exception as exc:  # noqa: BLE001 -- any transport failure means offline
                    log.warning("cannot publish resources/get: %s", exc)
            what = _items_text(action.items)
            if token is None:
                self.offline = True
                self._waiting[action.app] = f"waiting for {what}: the cloud is unreachable"
                return
            self._inflight.sent(token, Request(action.app, version, action.items, now))
            self._waiting[action.app] = f"fetching {what}"
            log.info("fetching %s for app %s", what, action.app)

    def _apply(self, action: Apply) -> None:
        self._backend.apply(self._store.bundle(action.app, action.version))

    def _call(self, app: str, version: str | None, *, now: float, do: Callable[[], None]) -> None:
        verb = "remove" if version is None else f"apply version {version} of"
        try:
            do()
        except Exception as exc:  # BackendError, or a bug in a backend: never crash the agent
            retry_after = exc.retry_after if isinstance(exc, BackendError) else None
            if not isinstance(exc, BackendError):
                log.exception("the %s backend failed to %s app %s", self._backend.name, verb, app)
            cause = str(exc) if version is not None else f"cannot remove: {exc}"
            with self._lock:
                attempts = self._attempts(app, version)
                delay = retry_after if retry_after is not None else self._period
                problem = Problem(version, cause or type(exc).__name__, now + delay, attempts)
                self._record(app, problem)
            return
        with self._lock:
            solved = self._problems.get(app)
            if solved is not None and solved.version == version:
                del self._problems[app]
            self._waiting.pop(app, None)
        log.info("%s: %s app %s", self._backend.name, "removed" if version is None else
                 f"applied version {version} of", app)

    def _attempts(self, app: str, version: str | None) -> int:
        previous = self._problems.get(app)
        return previous.attempts + 1 if previous is not None and previous.version == version else 1

    def _record(self, app: str, problem: Problem) -> None:
        previous = self._problems.get(app)
        self._problems[app] = problem
        repeated = previous is not None and previous.cause == problem.cause
        log.log(logging.DEBUG if repeated else logging.WARNING, "app %s failed (attempt %d): %s",
                app, problem.attempts, problem.cause)
