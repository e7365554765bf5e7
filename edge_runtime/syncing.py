"""The shadow sync state machine: what the node does with every message, change and tick.

It is the logic of DESIGN §4, §5 and §8 without sockets or threads. ``SyncRunner`` feeds
it one event at a time from a single thread: ``connected``/``disconnected``,
``handle(suffix, raw)`` per message, ``report(state)`` per new reported state, and
``tick()`` at ``next_deadline()``. It answers through a ``Transport`` (a fake in tests)
and the ``Cache``. The rules:

- On connect: retained ``status`` online, then ``shadow/get`` with a clientToken.
  Nothing is reported before the document arrives, because reports are diffs against it.
- The ``get/accepted`` answering our request is authoritative; other copies count only
  if newer. Deltas and updates not newer than the known version are stale and dropped.
  A version that skips one never seen, a delta before any document, or an update that
  cannot be accounted for means the cache may be wrong: fetch the document again.
- A changed desired section goes to the reconciler, whose full reported state goes to
  the ``Outbox`` (coalesced, one update in flight, diffs with nulls for removed keys).
- A rejected update is logged; 409 re-fetches, 429, 500 and 503 retry after ``RETRY_SECONDS``.
- ``resources/get/accepted|rejected`` go to ``on_resources`` (the engine), inside the
  message's cache batch: the resources an answer brings are stored with one write.
- Heartbeat: an unacknowledged state is sent again, an update or get whose answer never
  came is given up and the document re-fetched; otherwise the status is refreshed.
- A cache the disk would not take (full) is written again every ``CACHE_RETRY_SECONDS``
  until it is; meanwhile the node runs on memory (``storage.AtomicJSONStorage``).
"""

from __future__ import annotations

import itertools
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import replace

from edge_runtime.cache import Cache
from edge_runtime.incoming import (
    BadMessage,
    parse_accepted,
    parse_delta,
    parse_document,
    parse_refusal,
)
from edge_runtime.reconciling import Reconciler
from edge_runtime.reporting import Outbox, Request
from edge_runtime.transport import Transport
from schemas.errors import ErrorCode, Rejection
from schemas.messages import status_payload
from schemas.payloads import decode_json
from schemas.shadow import (
    DEFAULT_LIMITS,
    JSONObject,
    ShadowDocument,
    ShadowLimits,
    json_equal,
    merge_patch,
)
from schemas.topics import Suffix

log = logging.getLogger(__name__)

RETRY_SECONDS = 1.0
CACHE_RETRY_SECONDS = 2.0  # a cache write that failed (full disk) is tried again this often
RETRYABLE_CODES = frozenset({ErrorCode.TOO_MANY_REQUESTS, ErrorCode.INTERNAL, ErrorCode.UNAVAILABLE})
ResourceHandler = Callable[[Suffix, JSONObject], None]


class ShadowSync:
    """One node's side of the shadow protocol; every method is called from one thread."""

    def __init__(
        self,
        transport: Transport,
        cache: Cache,
        *,
        reconciler: Reconciler,
        clock: Callable[[], float] = time.monotonic,
        wallclock: Callable[[], float] = time.time,
        heartbeat_seconds: float = 30.0,
        request_timeout_seconds: float = 2.0,
        debounce_seconds: float = 0.005,
        limits: ShadowLimits = DEFAULT_LIMITS,
        on_resources: ResourceHandler | None = None,
        token_prefix: str | None = None,
    ) -> None:
        self._transport, self._cache, self._reconciler = transport, cache, reconciler
        self._clock, self._wallclock = clock, wallclock
        self._heartbeat, self._limits, self._on_resources = heartbeat_seconds, limits, on_resources
        prefix, counter = token_prefix or uuid.uuid4().hex[:8], itertools.count(1)
        self._token: Callable[[], str] = lambda: f"{prefix}-{next(counter)}"
        self._outbox = Outbox(transport, cache, clock=clock, debounce_seconds=debounce_seconds,
                              tokens=self._token)
        self._doc: ShadowDocument | None = None
        self._reconciled: JSONObject | None = None  # the desired section last reconciled
        self._get: Request | None = None
        self._get_due: float | None = None
        self._heartbeat_due: float | None = None
        # An unanswered get or update is sent again after this wait, doubling up to the
        # heartbeat: the cloud may be restarting or not yet subscribed after a broker restart.
        self._request_timeout = min(request_timeout_seconds, heartbeat_seconds)
        self._get_wait = self._request_timeout
        self.online = False
        self.synced = False  # the document was fetched since the last connect

    # -- state, for the shell and tests ----------------------------------------------
    @property
    def document(self) -> ShadowDocument | None:
        """The cloud's document as known here; its reported is what the cloud acknowledged."""
        return self._doc

    @property
    def local_reported(self) -> JSONObject | None:
        return self._outbox.latest

    def next_deadline(self) -> float | None:
        # a report can only go out once synced (get/accepted sends what is pending): until
        # then its due time, maybe long past, is no deadline, or the runner would spin
        report_due = self._outbox.due if self.synced else None
        flush_due = self._clock() + CACHE_RETRY_SECONDS if self._cache.unsaved else None
        dues = [d for d in (report_due, self._get_due, self._heartbeat_due, self._update_due(), flush_due)
                if d is not None]
        return min(dues) if dues else None

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        """With a cached document, reconcile it now, before any network (offline autonomy)."""
        self._doc = self._cache.document()
        if self._doc is not None:
            log.info("resuming from the cached document (version %d)", self._doc.version)
            self._reconcile()

    def connected(self) -> None:
        self.online, self.synced = True, False
        self._get_wait = self._request_timeout
        self._outbox.give_up()
        self._publish_status(online=True)
        self._request_document()
        self._heartbeat_due = self._clock() + self._heartbeat

    def disconnected(self) -> None:
        """Requests in flight are forgotten: after reconnecting, the document is re-fetched."""
        self.online = self.synced = False
        self._get = self._get_due = self._heartbeat_due = None
        self._outbox.give_up()

    def shutdown(self) -> None:
        """Clean stop: send a pending report if possible, then the retained offline status."""
        if self.online:
            if self._outbox.due is not None:
                self._send_report()
            self._publish_status(online=False)
        self.disconnected()

    # -- inputs ----------------------------------------------------------------------
    def report(self, reported: JSONObject) -> None:
        """A new full reported state of this node (sent after the debounce if it changed)."""
        self._outbox.put(reported)

    def handle(self, suffix: Suffix, raw: bytes) -> None:
        """One message from under this node's root; bad input is logged, never raised."""
        try:
            payload = decode_json(raw, max_bytes=self._limits.max_payload_bytes)
            if not isinstance(payload, dict):
                raise BadMessage("the payload is not a JSON object")
            with self._cache.batch():  # what one message changes is written once
                self._dispatch(suffix, payload)
        except (Rejection, BadMessage) as exc:
            log.warning("ignored a malformed %s message: %s", suffix.value, exc)

    def tick(self) -> None:
        """Run the timers that are due."""
        now = self._clock()
        if self._cache.unsaved:
            self._cache.flush()
        if self._outbox.due is not None and now >= self._outbox.due:
            self._send_report()
        if self._get_due is not None and now >= self._get_due:
            if self._get is not None:
                log.info("no answer to shadow/get yet; asking again")
            self._request_document()
        update_due = self._update_due()
        if update_due is not None and now >= update_due:
            self._outbox.give_up()
            self._refetch("no answer to the last update")
        if self._heartbeat_due is not None and now >= self._heartbeat_due:
            self._heartbeat_due = now + self._heartbeat
            self._beat(now)

    def request_resources(self, items: list[JSONObject]) -> str | None:
        """Publish ``resources/get`` for ``items``; returns its clientToken (None offline).

        The one method the engine calls from its own thread: it only reads ``online``,
        draws a token and publishes (``MqttLink.publish`` is thread-safe). The answer comes
        back on the sync thread, through ``on_resources``.
        """
        if not self.online:
            return None
        token = self._token()
        self._transport.publish(Suffix.RESOURCES_GET, {"clientToken": token, "items": items})
        return token

    # -- messages --------------------------------------------------------------------
    def _dispatch(self, suffix: Suffix, payload: JSONObject) -> None:
        if suffix is Suffix.SHADOW_GET_ACCEPTED:
            self._on_get_accepted(payload)
        elif suffix is Suffix.SHADOW_GET_REJECTED:
            self._on_get_rejected(payload)
        elif suffix is Suffix.SHADOW_UPDATE_DELTA:
            self._on_delta(payload)
        elif suffix is Suffix.SHADOW_UPDATE_ACCEPTED:
            self._on_update_accepted(payload)
        elif suffix is Suffix.SHADOW_UPDATE_REJECTED:
            self._on_update_rejected(payload)
        elif (
            suffix in (Suffix.RESOURCES_GET_ACCEPTED, Suffix.RESOURCES_GET_REJECTED)
            and self._on_resources is not None
        ):
            self._on_resources(suffix, payload)

    def _on_get_accepted(self, payload: JSONObject) -> None:
        doc, token = parse_document(payload)
        answers = self._get is not None and token in (None, self._get.token)
        if not answers and self._doc is not None and doc.version <= self._doc.version:
            log.debug("dropped a stale get/accepted (version %d)", doc.version)
            return
        if answers:
            self._get = self._get_due = None
            self._get_wait = self._request_timeout
        self._adopt(doc)
        self.synced = self.online
        self._send_report()

    def _on_get_rejected(self, payload: JSONObject) -> None:
        refusal = parse_refusal(payload)
        if self._get is None or refusal.client_token not in (None, self._get.token):
            return
        self._get = None
        retry = RETRY_SECONDS if refusal.code in RETRYABLE_CODES else self._heartbeat
        log.warning("the cloud refused to send this node's shadow (%d: %s); retrying in %g s",
                    refusal.code, refusal.message, retry)
        self._get_due = self._clock() + retry

    def _on_delta(self, payload: JSONObject) -> None:
        delta = parse_delta(payload)
        if self._doc is None:
            self._refetch("a delta arrived before any document")
            return
        known = self._doc.version
        if delta.version <= known:
            log.debug("dropped a stale delta (version %d <= %d)", delta.version, known)
            return
        desired = merge_patch(self._doc.desired, delta.state)  # under apps, null removes
        self._adopt(replace(self._doc, desired=desired, version=delta.version))
        self._send_report()
        if delta.version > known + 1:
            self._refetch(f"the delta skipped from version {known} to {delta.version}")

    def _on_update_accepted(self, payload: JSONObject) -> None:
        accepted = parse_accepted(payload)
        ours = self._outbox.answered(accepted.client_token)
        if ours is not None:
            self._acknowledge(ours.patch or {}, accepted.version)
            return
        # Someone else's update (the cloud's, to desired), or one of ours given up on.
        if self._doc is None or accepted.version <= self._doc.version:
            return
        if accepted.version == self._doc.version + 1 and set(accepted.state) == {"desired"}:
            patch = accepted.state["desired"]
            desired = {} if patch is None else merge_patch(self._doc.desired, patch)
            self._adopt(replace(self._doc, desired=desired, version=accepted.version))
            self._send_report()
        else:
            self._refetch(f"an update this node cannot account for (version {accepted.version})")

    def _on_update_rejected(self, payload: JSONObject) -> None:
        refusal = parse_refusal(payload)
        if self._outbox.answered(refusal.client_token) is None:
            return
        log.warning("the cloud rejected this node's report (%d: %s)", refusal.code, refusal.message)
        if refusal.code == ErrorCode.CONFLICT:
            self._refetch("version conflict")
        elif refusal.code in RETRYABLE_CODES:
            self._outbox.schedule(self._clock() + RETRY_SECONDS)

    # -- actions ---------------------------------------------------------------------
    def _adopt(self, doc: ShadowDocument) -> None:
        """Take ``doc`` as the known document; reconcile if its desired section changed."""
        self._doc = doc
        self._cache.save(document=doc)
        if self._reconciled is None or not json_equal(doc.desired, self._reconciled):
            self._reconcile()

    def _acknowledge(self, patch: JSONObject, version: int) -> None:
        """Our update was applied: the cloud's reported is the patch applied to it."""
        if self._doc is not None:
            known = self._doc.version
            self._doc = replace(self._doc, reported=merge_patch(self._doc.reported, patch),
                                version=version if version == known + 1 else known)
            self._cache.save(document=self._doc)
            if version > known + 1:
                self._refetch(f"the update was accepted as version {version}, not {known + 1}")
                return
        self._send_report()

    def _reconcile(self) -> None:
        assert self._doc is not None
        desired = self._doc.desired
        try:
            reported = self._reconciler.reconcile(desired)
        except Exception:  # a broken reconciler must not stop the sync
            log.exception("the reconciler failed on desired version %d", self._doc.version)
            return
        self._reconciled = desired
        self._outbox.put(reported)

    def _send_report(self) -> None:
        if self.synced and self._doc is not None:
            self._outbox.send(self._doc.reported)

    def _request_document(self) -> None:
        self._get_due = None
        if self.online:
            token = self._token()
            self._transport.publish(Suffix.SHADOW_GET, {"clientToken": token})
            self._get = Request(token, self._clock())
            self._get_due = self._get.sent_at + self._get_wait
            self._get_wait = min(2 * self._get_wait, self._heartbeat)

    def _refetch(self, reason: str) -> None:
        log.info("fetching the shadow again: %s", reason)
        self._request_document()

    def _beat(self, now: float) -> None:
        if not self.online:
            return
        in_flight = self._outbox.in_flight
        if self._get is not None:
            if now - self._get.sent_at >= self._heartbeat:
                self._refetch("no answer to shadow/get")
        elif in_flight is not None:
            if now - in_flight.sent_at >= self._heartbeat:
                self._outbox.give_up()
                self._refetch("no answer to the last update")
        elif self.synced and self._doc is not None and self._outbox.pending(self._doc.reported):
            self._send_report()
        else:
            self._publish_status(online=True)

    def _update_due(self) -> float | None:
        in_flight = self._outbox.in_flight
        return None if in_flight is None or not self.online else in_flight.sent_at + self._request_timeout

    def _publish_status(self, *, online: bool) -> None:
        payload = dict(status_payload(online, timestamp=int(self._wallclock())))
        self._transport.publish(Suffix.STATUS, payload, retain=True)
