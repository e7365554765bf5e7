"""The function benchmark runs end to end (a few hundred invocations; not a timed test).

Real numbers come from ``run_function_bench()`` with its defaults (``tether bench functions``).
"""

from __future__ import annotations

import pytest

from launcher.bench_functions import run_function_bench


def test_function_bench_reports_consistent_numbers() -> None:
    row = run_function_bench(count=200, concurrency=2, replicas=2, warmup=20).row()
    assert (row["invocations"], row["errors"]) == (200, 0)
    assert row["per_second"] > 0
    assert 0 < row["p50_ms"] <= row["p99_ms"] <= row["max_ms"]


def test_function_bench_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        run_function_bench(count=0)
