"""A simulated edge node: what the agent says over MQTT, without its engine or a backend.

``tether bench fleet`` loads the cloud with thousands of these. Each one follows the
agent's rules (``edge_runtime.syncing``, ``reporting``, ``engine``) message for message,
so the cloud sees the traffic a real fleet sends, retries and storms included:

- on connect: retained ``status`` online, ``shadow/get`` with a clientToken;
- ``get/accepted`` answering it is authoritative; a delta or someone else's
  ``update/accepted`` counts only if newer; one that skips a version re-fetches;
- a changed desired section is "reconciled": apps no longer desired stop at once, a
  desired app whose version (and what it pins) was never fetched is asked for with one
  ``resources/get``; once fetched it "runs" (no process is started);
- the full reported state (node facts, usage, apps, appstats: ``Pending`` while fetching,
  ``Running`` after, ``Failed`` after a refused fetch) goes out as a merge diff against
  what the cloud acknowledged, one update in flight;
- timers (``tick``): an unanswered get is asked again after 2 s doubling to the heartbeat,
  an unanswered update is given up and the document re-fetched after 2 s, a fetch is
  asked again after 2 s; a refused fetch waits the engine's backoff (10 s doubling);
  429/500 on get or update retry after 1 s, 409 re-fetches; every heartbeat re-sends what
  is pending or refreshes the status.

The node owns no socket: the fleet hands it a ``Link`` on connect and tells it when the
link is gone, and every event is timestamped in ``marks`` for the phases to measure.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from edge_runtime.engine.status import backoff
from edge_runtime.syncing import RETRY_SECONDS, RETRYABLE_CODES
from launcher.fleet.catalog import AppCatalog, Key
from schemas.errors import ErrorCode
from schemas.payloads import encode_json
from schemas.shadow import JSONObject, merge_diff, merge_patch
from schemas.topics import Suffix

_SUFFIXES = {suffix.value: suffix for suffix in Suffix}


class Link(Protocol):
    """Where a node publishes: ``mqttlite.Connection`` (a recording fake in tests)."""

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None: ...


@dataclass(frozen=True)
class Timers:
    """The agent's defaults (``EdgeSettings``, ``Engine``), in seconds."""

    heartbeat: float = 30.0
    request_timeout: float = 2.0
    fetch_timeout: float = 2.0
    reconcile_period: float = 10.0  # the base of the backoff after a refused fetch


@dataclass
class FleetStats:
    """What every node of a fleet counts; ``marks`` counts nodes per first-time event."""

    marks: Counter[str] = field(default_factory=Counter)
    sent: Counter[str] = field(default_factory=Counter)  # to the cloud, by suffix
    received: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)  # "suffix code"
    resent: Counter[str] = field(default_factory=Counter)  # requests asked again, unanswered
    connects: int = 0
    connect_failures: int = 0
    disconnects: int = 0


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


class SimNode:
    """One simulated node; every method runs on the fleet's event loop."""

    def __init__(
        self, name: str, *, root: str, facts: JSONObject, nodestats: JSONObject,
        stats: FleetStats, catalog: AppCatalog, timers: Timers = Timers(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name, self.root = name, root
        self._facts, self._nodestats = {**facts, "hostname": name}, nodestats
        self._stats, self._catalog, self._timers, self._clock = stats, catalog, timers, clock
        self._prefix, self._counter = os.urandom(4).hex(), 0
        self.link: Link | None = None
        self.online = self.synced = False
        self.version: int | None = None
        self.desired: JSONObject = {}
        self._reconciled: JSONObject | None = None
        self.acked: JSONObject = {}  # the cloud's reported, as acknowledged
        self.running: dict[str, str] = {}
        self.properties: JSONObject = {}
        self._have: set[Key] = set()
        self._fetching: dict[str, _Fetch] = {}
        self._problems: dict[str, _Problem] = {}
        self._get: tuple[str, float] | None = None
        self._get_due: float | None = None
        self._get_wait = timers.request_timeout
        self._in_flight: tuple[str, float, JSONObject] | None = None
        self._report_due: float | None = None
        self._heartbeat_due: float | None = None
        self._retry_due: float | None = None  # the first refused fetch to ask again
        self._waiters: list[tuple[str, Any, float, asyncio.Future[float | None]]] = []
        self.marks: dict[str, float] = {}  # event -> when it first happened (clock)

    # -- the link ------------------------------------------------------------------------
    def connected(self, link: Link) -> None:
        self.link, self.online, self.synced = link, True, False
        self._mark("connected")
        self._get_wait = self._timers.request_timeout
        self._in_flight = None
        self._publish(Suffix.STATUS, self.status_payload(online=True), retain=True)
        self._request_document()
        self._heartbeat_due = self._clock() + self._timers.heartbeat

    def disconnected(self) -> None:
        """In-flight requests are forgotten; fetches expire on their own timer."""
        self.link, self.online, self.synced = None, False, False
        self._get = self._get_due = self._heartbeat_due = self._in_flight = None

    def status_payload(self, *, online: bool) -> bytes:
        return encode_json({"online": online, "timestamp": int(time.time())})

    def set_property(self, key: str, value: Any) -> asyncio.Future[float | None]:
        """Report ``properties.key = value``; the future gets seconds until the cloud
        accepted it, or None if the update carrying it was rejected."""
        waiter: asyncio.Future[float | None] = asyncio.get_running_loop().create_future()
        self.properties = {**self.properties, key: value}
        self._waiters.append((key, value, self._clock(), waiter))
        self._send_report()
        return waiter

    # -- messages --------------------------------------------------------------------------
    def handle(self, topic: str, raw: bytes) -> None:
        suffix = _SUFFIXES.get(topic[len(self.root) + 1:])
        if suffix is None or not topic.startswith(self.root):
            return
        self._stats.received[suffix.value] += 1
        try:
            payload = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self._stats.rejected[f"{suffix.value} bad-json"] += 1
            return
        if not isinstance(payload, dict):
            return
        if suffix is Suffix.SHADOW_GET_ACCEPTED:
            self._on_document(payload)
        elif suffix is Suffix.SHADOW_UPDATE_DELTA:
            self._on_delta(payload)
        elif suffix is Suffix.SHADOW_UPDATE_ACCEPTED:
            self._on_accepted(payload)
        elif suffix is Suffix.RESOURCES_GET_ACCEPTED:
            self._on_resources(payload)
        elif suffix.value.endswith("/rejected"):
            self._on_rejected(suffix, payload)

    def _on_document(self, payload: JSONObject) -> None:
        token, version = payload.get("clientToken"), _version(payload)
        answers = self._get is not None and token in (None, self._get[0])
        if not answers and self.version is not None and version <= self.version:
            return
        if answers:
            self._get = self._get_due = None
            self._get_wait = self._timers.request_timeout
        state = payload.get("state") or {}
        self.version, self.acked = version, state.get("reported") or {}
        self._adopt(state.get("desired") or {})
        self.synced = self.online
        self._mark("document")
        self._send_report()
        if self._in_flight is None:  # nothing the cloud lacks: in sync already
            self._on_in_sync()

    def _on_delta(self, payload: JSONObject) -> None:
        version = _version(payload)
        if self.version is None:
            self._request_document()
            return
        known = self.version
        if version <= known:
            return
        self.version = version
        self._adopt(merge_patch(self.desired, payload.get("state") or {}))
        self._send_report()
        if version > known + 1:
            self._request_document()

    def _on_accepted(self, payload: JSONObject) -> None:
        version, flight = _version(payload), self._in_flight
        if flight is not None and payload.get("clientToken") == flight[0]:
            self._in_flight = None
            known = self.version or 0
            self.acked = merge_patch(self.acked, flight[2])
            self.version = version if version == known + 1 else known
            self._on_in_sync()
            if version > known + 1:
                self._request_document()
            else:
                self._send_report()
            return
        state = payload.get("state") or {}
        if self.version is None or version <= self.version:
            return
        if version == self.version + 1 and set(state) == {"desired"}:
            self.version = version
            patch = state["desired"]
            self._adopt({} if patch is None else merge_patch(self.desired, patch))
            self._send_report()
        else:
            self._request_document()

    def _on_rejected(self, suffix: Suffix, payload: JSONObject) -> None:
        code, token = payload.get("code"), payload.get("clientToken")
        self._stats.rejected[f"{suffix.value.removesuffix('/rejected')} {code}"] += 1
        now = self._clock()
        if suffix is Suffix.SHADOW_GET_REJECTED and self._get is not None and token in (None, self._get[0]):
            self._get = None
            self._get_due = now + (RETRY_SECONDS if code in RETRYABLE_CODES else self._timers.heartbeat)
        elif suffix is Suffix.SHADOW_UPDATE_REJECTED and self._in_flight and token == self._in_flight[0]:
            self._in_flight = None
            self._resolve_waiters(None)
            if code == ErrorCode.CONFLICT:
                self._request_document()
            elif code in RETRYABLE_CODES:
                self._report_due = now + RETRY_SECONDS
        elif suffix is Suffix.RESOURCES_GET_REJECTED and isinstance(token, str):
            fetch = self._fetching.pop(token, None)
            if fetch is not None and self._desired_apps().get(fetch.app) == fetch.version:
                self._fail(fetch, f"the cloud refused resources/get ({code}: {payload.get('message')})")

    def _on_resources(self, payload: JSONObject) -> None:
        token = payload.get("clientToken")
        fetch = self._fetching.pop(token, None) if isinstance(token, str) else None
        got: set[Key] = set()
        for item in payload.get("items") or ():
            if isinstance(item, dict) and isinstance(item.get("value"), dict):
                key: Key = (str(item.get("kind")), str(item.get("name")), str(item.get("version")))
                if key[0] == "app":
                    self._catalog.learn(key[1], key[2], item["value"])
                    self._mark(f"fetched:{key[1]}@{key[2]}")
                got.add(key)
        self._have |= got
        if fetch is not None:
            lacking = [key for key in fetch.items if key not in got]
            if lacking:
                self._fail(fetch, f"the cloud's answer lacked {lacking[0]}")
        self._reconcile()
        self._send_report()

    # -- state -----------------------------------------------------------------------------
    def _desired_apps(self) -> dict[str, str]:
        apps = self.desired.get("apps")
        if not isinstance(apps, dict):
            return {}
        return {name: version for name, version in apps.items() if isinstance(version, str)}

    def _adopt(self, desired: JSONObject) -> None:
        self.desired = desired
        if desired != self._reconciled:
            for name, version in self._desired_apps().items():
                self._mark(f"desired:{name}@{version}")
            self._reconcile()

    def _reconcile(self) -> None:
        """Stop what is no longer desired, run what is fetched, fetch what is missing."""
        self._reconciled = self.desired
        desired, now = self._desired_apps(), self._clock()
        for name in [name for name in self.running if name not in desired]:
            del self.running[name]
        for name in [n for n, p in self._problems.items() if p.version != desired.get(n)]:
            del self._problems[name]  # the agent forgets a problem when desired moves on
        fetching = {key for fetch in self._fetching.values() for key in fetch.items}
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
            if held or fetching.intersection(missing) or not self.online:
                continue
            token = self._token()
            items = [{"kind": kind, "name": item, "version": ver} for kind, item, ver in missing]
            self._publish(Suffix.RESOURCES_GET, encode_json({"clientToken": token, "items": items}))
            self._fetching[token] = _Fetch(name, version, tuple(missing), now)
        retries = [p.retry_at for p in self._problems.values() if p.retry_at > now]
        self._retry_due = min(retries, default=None)

    def _fail(self, fetch: _Fetch, cause: str) -> None:
        before = self._problems.get(fetch.app)
        attempts = before.attempts + 1 if before is not None and before.version == fetch.version else 1
        delay = backoff(attempts, base=self._timers.reconcile_period)
        retry_at = self._clock() + delay
        self._problems[fetch.app] = _Problem(fetch.version, cause, retry_at, attempts)
        self._retry_due = retry_at if self._retry_due is None else min(self._retry_due, retry_at)
        self._send_report()

    def compose(self) -> JSONObject:
        """The full reported state, as the agent's ``Reporter.compose`` builds it."""
        desired = self._desired_apps()
        stats: JSONObject = {}
        for name in sorted(desired.keys() | self.running.keys()):
            running, version = self.running.get(name), desired.get(name)
            body: JSONObject
            if running is not None:
                body = {"version": running, "status": "Running",
                        "instances": self._catalog.instances(name, running)}
            else:
                body = {"version": version, "status": "Pending",
                        "cause": f"fetching app {name}@{version}", "instances": []}
            problem = self._problems.get(name)
            if problem is not None and problem.version == version:
                body = {**body, "version": version, "status": "Failed", "cause": problem.cause}
            stats[name] = body
        reported: JSONObject = {"node": self._facts, "nodestats": self._nodestats,
                                "apps": dict(self.running), "appstats": stats}
        if self.properties:
            reported["properties"] = self.properties
        return reported

    # -- sending ---------------------------------------------------------------------------
    def _send_report(self) -> None:
        """The diff the cloud lacks, unless an update is in flight or nothing is pending."""
        if not self.synced or self._in_flight is not None or self.version is None:
            return
        patch = merge_diff(self.acked, self.compose())
        if not patch:
            return
        token = self._token()
        self._publish(Suffix.SHADOW_UPDATE,
                      encode_json({"state": {"reported": patch}, "clientToken": token}))
        self._in_flight = (token, self._clock(), patch)
        self._report_due = None

    def _request_document(self) -> None:
        self._get_due = None
        if self.online:
            token, now = self._token(), self._clock()
            self._publish(Suffix.SHADOW_GET, encode_json({"clientToken": token}))
            self._get = (token, now)
            self._get_due = now + self._get_wait
            self._get_wait = min(2 * self._get_wait, self._timers.heartbeat)

    def _publish(self, suffix: Suffix, payload: bytes, *, retain: bool = False) -> None:
        if self.link is not None:
            self.link.publish(f"{self.root}/{suffix.value}", payload, retain=retain)
            self._stats.sent[suffix.value] += 1

    def _token(self) -> str:
        self._counter += 1
        return f"{self._prefix}-{self._counter}"

    # -- events ----------------------------------------------------------------------------
    def _mark(self, event: str) -> None:
        if event not in self.marks:
            self.marks[event] = self._clock()
            self._stats.marks[event] += 1

    def _on_in_sync(self) -> None:
        """What the cloud acknowledged: the first report, apps running, properties."""
        self._mark("reported")
        apps, stats = self.acked.get("apps") or {}, self.acked.get("appstats") or {}
        for name, version in apps.items():
            if (stats.get(name) or {}).get("status") == "Running":
                self._mark(f"running:{name}@{version}")
        if self._waiters:
            properties = self.acked.get("properties") or {}
            now, waiting = self._clock(), []
            for key, value, since, waiter in self._waiters:
                if properties.get(key) == value:
                    if not waiter.done():
                        waiter.set_result(now - since)
                else:
                    waiting.append((key, value, since, waiter))
            self._waiters = waiting

    def _resolve_waiters(self, result: float | None) -> None:
        for _, _, _, waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(result)
        self._waiters = []

    # -- timers ----------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        """Run the timers that are due (the fleet calls this a few times a second)."""
        if not self.online:
            return
        if self._report_due is not None and now >= self._report_due:
            self._report_due = None
            self._send_report()
        if self._get_due is not None and now >= self._get_due:
            if self._get is not None:
                self._stats.resent["shadow/get"] += 1
            self._request_document()
        if self._in_flight is not None and now >= self._in_flight[1] + self._timers.request_timeout:
            self._in_flight = None
            self._stats.resent["shadow/update"] += 1
            self._request_document()
        expired = [t for t, f in self._fetching.items()
                   if now >= f.sent_at + self._timers.fetch_timeout] if self._fetching else []
        for token in expired:
            del self._fetching[token]
            self._stats.resent["resources/get"] += 1
        if expired or (self._retry_due is not None and now >= self._retry_due):
            self._reconcile()
            self._send_report()
        if self._heartbeat_due is not None and now >= self._heartbeat_due:
            self._heartbeat_due = now + self._timers.heartbeat
            self._beat()

    def _beat(self) -> None:
        if self._get is not None or self._in_flight is not None:
            return  # their own timers ask again
        if self.synced and self.version is not None and merge_diff(self.acked, self.compose()):
            self._send_report()
        else:
            self._publish(Suffix.STATUS, self.status_payload(online=True), retain=True)


def _version(payload: JSONObject) -> int:
    version = payload.get("version")
    return version if isinstance(version, int) and not isinstance(version, bool) else 0
