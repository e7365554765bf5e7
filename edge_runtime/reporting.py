"""The outbox of reported state: coalesced, at most one update in flight, kept offline.

Only the latest full reported state of a node matters (DESIGN §8), so the outbox holds
one state, not a queue. Every new state is written to the cache (reports made offline
survive a restart) and sent after a short debounce that gathers bursts into one update.
The update carries ``merge_diff(acknowledged, latest)``: what the cloud's reported
lacks, with nulls for keys that went away. At most one update is in flight, because the
next diff must start from what the cloud acknowledged; whatever changes meanwhile goes
out when the ack comes back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from edge_runtime.cache import Cache
from edge_runtime.transport import Transport
from schemas.shadow import JSONObject, json_equal, merge_diff
from schemas.topics import Suffix


@dataclass(frozen=True)
class Request:
    """A request in flight: its clientToken, when it left, and for an update its patch."""

    token: str
    sent_at: float
    patch: JSONObject | None = None


class Outbox:
    """The node's latest reported state and the update carrying it to the cloud."""

    def __init__(
        self,
        transport: Transport,
        cache: Cache,
        *,
        clock: Callable[[], float],
        debounce_seconds: float,
        tokens: Callable[[], str],
    ) -> None:
        self._transport, self._cache = transport, cache
        self._clock, self._debounce, self._tokens = clock, debounce_seconds, tokens
        self.latest: JSONObject | None = cache.outgoing()
        self.in_flight: Request | None = None
        self.due: float | None = None

    def put(self, reported: JSONObject) -> None:
        """A new full reported state: cache it and schedule it (if it changed)."""
        if self.latest is not None and json_equal(reported, self.latest):
            return
        self.latest = reported
        self._cache.save(outgoing=reported)
        self.schedule(self._clock() + self._debounce)

    def schedule(self, at: float) -> None:
        """Send at ``at`` at the latest; an earlier schedule stands (it gathers the burst)."""
        if self.due is None or at < self.due:
            self.due = at

    def pending(self, acknowledged: JSONObject) -> JSONObject:
        """What the cloud's reported lacks: the patch the next update would carry."""
        return {} if self.latest is None else merge_diff(acknowledged, self.latest)

    def send(self, acknowledged: JSONObject) -> None:
        """Send the pending patch now, unless an update is in flight or nothing is pending."""
        self.due = None
        if self.in_flight is not None:
            return
        patch = self.pending(acknowledged)
        if not patch:
            return
        token = self._tokens()
        update = {"state": {"reported": patch}, "clientToken": token}
        self._transport.publish(Suffix.SHADOW_UPDATE, update)
        self.in_flight = Request(token, self._clock(), patch)

    def answered(self, token: str | None) -> Request | None:
        """The update in flight if ``token`` answers it (it is then no longer in flight)."""
        ours = self.in_flight
        if ours is None or token != ours.token:
            return None
        self.in_flight = None
        return ours

    def give_up(self) -> None:
        """Forget the update in flight (connection lost, or its answer never came)."""
        self.in_flight = None
