"""The round-trip benchmark runs end to end (a few iterations; not a timed test).

Real numbers come from ``tether bench roundtrip`` (see the README); here we only prove
the benchmark works against both brokers and reports consistent percentiles.
"""

from __future__ import annotations

import pytest

from launcher.bench import percentile, run_roundtrip
from launcher.mosquitto import PrivateMosquitto, mosquitto_binary


def test_percentile_is_nearest_rank() -> None:
    samples = [float(x) for x in range(1, 101)]
    assert percentile(samples, 50) == 50
    assert percentile(samples, 99) == 99
    assert percentile(samples, 100) == 100
    assert percentile([7.0], 99) == 7.0


def _check(summaries: list) -> None:  # type: ignore[type-arg]
    roundtrip, patch = (s.row() for s in summaries)
    assert roundtrip["count"] == patch["count"] == 5
    assert 0 < roundtrip["p50_ms"] <= roundtrip["p99_ms"] <= roundtrip["max_ms"]
    # the round trip contains the PATCH
    assert roundtrip["p50_ms"] >= patch["p50_ms"]


def test_roundtrip_embedded_broker() -> None:
    _check(run_roundtrip(count=5, warmup=1))


@pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto is not installed")
def test_roundtrip_private_mosquitto() -> None:
    with PrivateMosquitto() as mosquitto:
        _check(run_roundtrip(count=5, warmup=1, mqtt_url=mosquitto.url))
