"""The matching benchmark runs and recomputes every node after the relabel (small fleet)."""

from __future__ import annotations

from launcher.bench_matching import run_matching_bench


def test_matching_bench_recomputes_every_node() -> None:
    result = run_matching_bench(nodes=300, apps=12)
    assert result["database"] == "sqlite"
    assert result["recompute_updated_nodes"] == 300 and result["noop_updated_nodes"] == 0
    assert result["recompute_seconds"] < 5
