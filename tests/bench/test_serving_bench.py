"""``tether bench serving`` runs and measures every kind of message (a small store, not timed)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from launcher.benchcli import app


def test_serving_bench_reports_cpu_per_message_of_each_kind() -> None:
    result = CliRunner().invoke(app, ["serving", "--nodes", "50", "--messages", "40",
                                      "--batch", "1", "--batch", "8", "--json"])
    assert result.exit_code == 0, result.output
    measured = json.loads(result.output)
    assert set(measured["cpu_us_per_message"]) == {
        f"{kind} x{size}" for kind in ("shadow/update", "shadow/get", "status") for size in (1, 8)}
    assert all(value > 0 for value in measured["cpu_us_per_message"].values())
    # every message was answered: an accepted or a document for each update and get
    assert measured["replies"] >= 2 * 40
