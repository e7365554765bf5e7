"""A simulated edge node: what the agent says over MQTT, without a process or a cache.

``tether bench fleet`` loads the cloud with thousands of these. Each one follows the
agent's sync rules (``edge_runtime.syncing``, ``reporting``) message for message, and its
engine's through ``apps.NodeApps``, so the cloud sees the traffic a real fleet sends,
retries and storms included:

- on connect: retained ``status`` online, ``shadow/get`` with a clientToken;
- ``get/accepted`` answering it is authoritative; a delta or someone else's
  ``update/accepted`` counts only if newer; one that skips a version re-fetches;
- the full reported state goes out as a merge diff against what the cloud acknowledged,
  one update in flight;
- timers (``tick``): an unanswered get is asked again after 2 s doubling to the heartbeat,
  an unanswered update is given up and the document re-fetched after 2 s; 429/500 on get
  or update retry after 1 s, 409 re-fetches; every heartbeat re-sends what is pending or
  refreshes the status.

The node owns no socket: the fleet hands it a ``Link`` on connect and tells it when the
link is gone, and every event is timestamped in ``marks`` for the phases to measure.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

import orjson

from edge_runtime.syncing import RETRY_SECONDS, RETRYABLE_CODES
from launcher.fleet.apps import NodeApps
from launcher.fleet.catalog import AppCatalog
from launcher.fleet.shared import FleetStats, Link, Timers
from schemas.errors import ErrorCode
from schemas.payloads import encode_json
from schemas.shadow import JSONObject, merge_diff, merge_patch
from schemas.topics import Suffix

_SUFFIXES = {suffix.value: suffix for suffix in Suffix}
DEFAULT_TIMERS = Timers()


class SimNode:
    """One simulated node; every method runs on the fleet's event loop."""

    def __init__(
        self, name: str, *, root: str, facts: JSONObject, nodestats: JSONObject,
        stats: FleetStats, catalog: AppCatalog, timers: Timers = DEFAULT_TIMERS,
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
        self.apps = NodeApps(catalog, fetch_timeout=timers.fetch_timeout,
                             backoff_base=timers.reconcile_period, clock=clock)
        self.properties: JSONObject = {}
        self._get: tuple[str, float] | None = None
        self._get_due: float | None = None
        self._get_wait = timers.request_timeout
        self._in_flight: tuple[str, float, JSONObject] | None = None
        self._report_due: float | None = None
        self._heartbeat_due: float | None = None
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
        elif suffix is Suffix.RESOURCES_GET_REJECTED:
            cause = f"the cloud refused resources/get ({code}: {payload.get('message')})"
            if self.apps.refused(token, cause, self._desired_apps()):
                self._send_report()

    def _on_resources(self, payload: JSONObject) -> None:
        self.apps.answered(payload.get("clientToken"), payload.get("items"), mark=self._mark)
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
        self._reconciled = self.desired
        self.apps.reconcile(self._desired_apps(), self._fetch)

    def _fetch(self, items: list[JSONObject]) -> str | None:
        if not self.online:
            return None  # the engine waits for the broker; the reconcile after connect asks
        token = self._token()
        self._publish(Suffix.RESOURCES_GET, encode_json({"clientToken": token, "items": items}))
        return token

    def compose(self) -> JSONObject:
        """The full reported state, as the agent's ``Reporter.compose`` builds it."""
        apps, stats = self.apps.report(self._desired_apps())
        reported: JSONObject = {"node": self._facts, "nodestats": self._nodestats,
                                "apps": apps, "appstats": stats}
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
        expired, reconcile = self.apps.due(now)
        if expired:
            self._stats.resent["resources/get"] += expired
        if reconcile:
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
