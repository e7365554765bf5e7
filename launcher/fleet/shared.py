"""What every simulated node of a fleet shares: the agent's timer settings, the counters
the fleet keeps, and the ``Link`` a node publishes on (``mqttlite.Connection``, or a
recording fake in the tests)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol


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
    dead_links: int = 0  # connections the watchdog dropped (half-open)
