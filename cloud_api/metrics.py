"""The process's Prometheus metrics, kept by ``prometheus_client``, for ``GET /metrics``.

Why it exists: one place names every series the cloud exports, so names and labels stay
consistent (an HTTP or error status is always ``code``), and each ``Cloud`` gets its own
registry (tests run many clouds in one process). What is exported:

- counters the bridge and REST increment: shadow updates accepted/rejected (``source``,
  ``code``), bridge messages (``direction``) and bridge errors (``kind``);
- ``tether_http_request_duration_seconds`` by route template, method and ``code``, and
  ``tether_shadow_update_duration_seconds`` by ``source`` (rest|mqtt);
- the process collector's CPU, memory, file descriptors and start time, and Python's GC;
- fleet gauges read at scrape time from the database and passed to ``render`` (one
  aggregate query each, so every replica reports the same): ``tether_nodes`` by namespace and state,
  ``tether_nodes_online``, ``tether_app_nodes`` by namespace, app and status, and
  ``tether_bridge_connected``.

``Metrics.inc`` is on the bridge's hot path: it looks the labelled child up in a plain dict
(no lock of ours, no sorting) and leaves the one lock per increment to prometheus_client.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric

from schemas.errors import Rejection

UPDATES_ACCEPTED = "tether_shadow_updates_accepted_total"
UPDATES_REJECTED = "tether_shadow_updates_rejected_total"
BRIDGE_MESSAGES = "tether_bridge_messages_total"
BRIDGE_ERRORS = "tether_bridge_errors_total"
NODES_ONLINE = "tether_nodes_online"
BRIDGE_CONNECTED = "tether_bridge_connected"
REQUEST_SECONDS = "tether_http_request_duration_seconds"
UPDATE_SECONDS = "tether_shadow_update_duration_seconds"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# name -> (help, label names); label names sorted, as the text output lists them
_COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    UPDATES_ACCEPTED: ("Shadow updates accepted, by source (rest|mqtt).", ("source",)),
    UPDATES_REJECTED: ("Shadow updates rejected, by source and error code.", ("code", "source")),
    BRIDGE_MESSAGES: ("MQTT messages handled by the bridge, by direction (in|out).", ("direction",)),
    BRIDGE_ERRORS: ("Bridge messages refused or failed, by kind (an error code, ignored, topic, "
                    + "overload, stale, internal, publish).", ("kind",)),
}
# seconds: a REST call or a shadow update is a few ms; a rollout list at 10k nodes ~0.1 s
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# no ``_created`` twin of every series: scrapers do not need them
disable_created_metrics()  # type: ignore[no-untyped-call]


class Metrics:
    """The metrics of one cloud process, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self._counters: dict[str, Counter] = {
            name: Counter(name.removesuffix("_total"), text, labels, registry=self.registry)
            for name, (text, labels) in _COUNTERS.items()
        }
        self._children: dict[tuple[Any, ...], Any] = {}
        self.request_seconds = Histogram(
            REQUEST_SECONDS, "REST requests, by route template, method and status code.",
            ("route", "method", "code"), buckets=_BUCKETS, registry=self.registry)
        self.update_seconds = Histogram(
            UPDATE_SECONDS, "Shadow updates from receipt to answer, by source (rest|mqtt).",
            ("source",), buckets=_BUCKETS, registry=self.registry)
        for source in ("rest", "mqtt"):
            self._counters[UPDATES_ACCEPTED].labels(source=source)
            self.update_seconds.labels(source=source)

    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        """Add ``amount`` to the counter ``name`` with these labels (all its label names)."""
        key = (name, *labels.items())
        child = self._children.get(key)
        if child is None:
            child = self._counters[name].labels(**labels)
            self._children[key] = child
        child.inc(amount)

    def value(self, name: str, **labels: str) -> float:
        """One counter's value (0 if never incremented), for tests and health output."""
        found = self.registry.get_sample_value(name, labels)
        return 0.0 if found is None else found

    def observe_update(self, source: str, seconds: float) -> None:
        self.update_seconds.labels(source=source).observe(seconds)

    def observe_updates(self, source: str, seconds: float, count: int) -> None:
        """``count`` updates that each took ``seconds`` (the updates of one batch)."""
        histogram = self.update_seconds.labels(source=source)
        for _ in range(count):
            histogram.observe(seconds)

    @contextmanager
    def counting_update(self, source: str) -> Iterator[None]:
        """Count the shadow update done in the block as accepted, or rejected by its code,
        and time it."""
        started = time.perf_counter()
        try:
            yield
        except Rejection as exc:
            self.inc(UPDATES_REJECTED, source=source, code=str(int(exc.code)))
            raise
        finally:
            self.observe_update(source, time.perf_counter() - started)
        self.inc(UPDATES_ACCEPTED, source=source)

    def observe_request(self, *, route: str, method: str, code: int, seconds: float) -> None:
        self.request_seconds.labels(route=route, method=method, code=str(code)).observe(seconds)

    def render(self, extra: Iterable[Metric] = ()) -> bytes:
        """The Prometheus text exposition of this process's registry, then ``extra`` (the
        gauges read from the database at this scrape)."""
        return generate_latest(_Scrape(self.registry, list(extra)))


class _Scrape:
    """What ``generate_latest`` reads: the registry's families and this scrape's gauges."""

    def __init__(self, registry: CollectorRegistry, extra: list[Metric]) -> None:
        self.registry, self.extra = registry, extra

    def collect(self) -> Iterator[Metric]:
        yield from self.registry.collect()
        yield from self.extra


def gauge(name: str, text: str, labels: tuple[str, ...],
          samples: Iterable[tuple[tuple[str, ...], float]]) -> GaugeMetricFamily:
    """A gauge family with one sample per label values."""
    family = GaugeMetricFamily(name, text, labels=list(labels))
    for values, value in samples:
        family.add_metric(list(values), value)
    return family
