"""Process counters rendered as Prometheus text for ``GET /metrics``.

A few counters do not justify a client library: this holds labelled counters behind a
lock (bridge workers and REST threads increment them concurrently) and renders the
text exposition format. Gauges that are facts of the store (nodes online) are read at
scrape time by the route and passed to ``render``, so every replica reports the same.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from schemas.errors import Rejection

Labels = tuple[tuple[str, str], ...]

UPDATES_ACCEPTED = "tether_shadow_updates_accepted_total"
UPDATES_REJECTED = "tether_shadow_updates_rejected_total"
BRIDGE_MESSAGES = "tether_bridge_messages_total"
BRIDGE_ERRORS = "tether_bridge_errors_total"
NODES_ONLINE = "tether_nodes_online"
BRIDGE_CONNECTED = "tether_bridge_connected"

_HELP: dict[str, tuple[str, str]] = {
    UPDATES_ACCEPTED: ("counter", "Shadow updates accepted, by source (rest|mqtt)."),
    UPDATES_REJECTED: ("counter", "Shadow updates rejected, by source and error code."),
    BRIDGE_MESSAGES: ("counter", "MQTT messages handled by the bridge, by direction (in|out)."),
    BRIDGE_ERRORS: ("counter", "Bridge messages refused or failed, by kind (code|ignored|...)."),
    NODES_ONLINE: ("gauge", "Nodes whose last status said online."),
    BRIDGE_CONNECTED: ("gauge", "1 if this process's MQTT bridge is connected and subscribed."),
}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _sample(name: str, labels: Labels, value: float) -> str:
    shown = ",".join(f'{key}="{_escape(val)}"' for key, val in labels)
    number = int(value) if float(value).is_integer() else value
    return f"{name}{{{shown}}} {number}" if shown else f"{name} {number}"


class Metrics:
    """Labelled counters of one process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, dict[Labels, float]] = {}

    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            series = self._counters.setdefault(name, {})
            series[key] = series.get(key, 0) + amount

    def value(self, name: str, **labels: str) -> float:
        """One counter's value (0 if never incremented), for tests and health output."""
        with self._lock:
            return self._counters.get(name, {}).get(tuple(sorted(labels.items())), 0)

    @contextmanager
    def counting_update(self, source: str) -> Iterator[None]:
        """Count the shadow update done in the block as accepted, or rejected by its code."""
        try:
            yield
        except Rejection as exc:
            self.inc(UPDATES_REJECTED, source=source, code=str(int(exc.code)))
            raise
        self.inc(UPDATES_ACCEPTED, source=source)

    def render(self, gauges: Mapping[str, float] | None = None) -> str:
        """The Prometheus text exposition of every counter and the given gauges."""
        with self._lock:
            counters = {name: dict(series) for name, series in self._counters.items()}
        lines: list[str] = []
        names = sorted(set(_HELP) | set(counters) | set(gauges or {}))
        for name in names:
            kind, text = _HELP.get(name, ("untyped", name))
            if name in counters:
                series = sorted(counters[name].items())
                samples = [_sample(name, labels, value) for labels, value in series]
            elif gauges and name in gauges:
                samples = [_sample(name, (), gauges[name])]
            elif kind == "counter":
                samples = [_sample(name, (), 0)]
            else:
                continue
            lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}", *samples]
        return "\n".join(lines) + "\n"
