"""A per-key sliding-window rate limit, in memory: the brake on ``POST /v1/activate``.

Activation is the one write endpoint anyone can reach without a bearer token; tokens are
256 random bits so guessing is hopeless, but an unthrottled endpoint that hashes and
queries on every request is a cheap way to load the database. Each replica limits on its
own (a fleet-wide limit belongs in the load balancer in front of the replicas).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

from cloud_api.errors import Busy

__all__ = ["RateLimiter"]


class RateLimiter:
    """At most ``limit`` calls per ``window`` seconds per key; more raises ``Busy`` (429)."""

    def __init__(
        self,
        limit: int,
        *,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self._limit, self._window, self._clock, self._max_keys = limit, window, clock, max_keys
        self._calls: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, *, what: str = "requests") -> None:
        now = self._clock()
        with self._lock:
            calls = self._calls.get(key)
            if calls is None:
                if len(self._calls) >= self._max_keys:
                    self._forget_idle(now)
                calls = self._calls[key] = deque()
            while calls and calls[0] <= now - self._window:
                calls.popleft()
            if len(calls) >= self._limit:
                retry_after = max(1.0, math.ceil(calls[0] + self._window - now))
                raise Busy(
                    f"too many {what} from {key}: at most {self._limit} per "
                    f"{self._window:g} s; retry in {retry_after:g} s",
                    retry_after=retry_after,
                )
            calls.append(now)

    def _forget_idle(self, now: float) -> None:
        self._calls = {
            key: calls for key, calls in self._calls.items() if calls and calls[-1] > now - self._window
        }
