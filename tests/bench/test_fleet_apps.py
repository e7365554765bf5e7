"""A simulated node told to fail an app version reports it as a crash-looping process,
and only that version: the input of rollouts gated on reported health."""

from __future__ import annotations

from launcher.fleet.apps import NodeApps
from launcher.fleet.catalog import AppCatalog

APP = {"name": "web", "services": [{"name": "main", "command": ["sleep", "1"]}]}


def test_a_failing_version_reports_failed_with_restarts_and_others_run() -> None:
    apps = NodeApps(AppCatalog(), fetch_timeout=2, backoff_base=10, clock=lambda: 0.0)
    apps.fail("web", "2")

    def run(version: str) -> tuple[dict[str, str], dict[str, object]]:
        apps.reconcile({"web": version}, lambda items: f"token-{version}")  # fetch it
        apps.answered(f"token-{version}", [{"kind": "app", "name": "web", "version": version,
                                            "value": APP}], mark=lambda event: None)
        apps.reconcile({"web": version}, lambda items: None)
        return apps.report({"web": version})

    running, stats = run("1")
    assert running == {"web": "1"} and stats["web"]["status"] == "Running"
    running, stats = run("2")
    assert running == {"web": "2"}  # it runs, and keeps exiting
    web = stats["web"]
    assert isinstance(web, dict) and web["status"] == "Failed" and "simulated crash" in web["cause"]
    assert web["instances"][0]["restarts"] > 0
