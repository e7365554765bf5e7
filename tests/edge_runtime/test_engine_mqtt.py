"""The agent with its engine and the native backend, against a real broker and an in-test
cloud that serves ``resources/get``: apps run, fail and go, and the cloud sees it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edge_runtime.agent import EdgeAgent
from tests.edge_runtime.nativeprocs import pid_of, running
from tests.edge_runtime.resourcecloud import Catalog, ResourceCloud, native_app

pytestmark = pytest.mark.mosquitto
StartAgent = Callable[..., EdgeAgent]
NS = "default"


def test_apps_run_fail_and_go_and_the_cloud_sees_it(
    rcloud: ResourceCloud, catalog: Catalog, agents: StartAgent, unique_name: str
) -> None:
    def reported() -> dict[str, Any]:
        return rcloud.document(NS, unique_name).reported

    def status(app: str) -> Any:
        return reported().get("appstats", {}).get(app, {}).get("status")

    catalog.add(native_app("web"), "v1")
    rcloud.set_desired(NS, unique_name, {"apps": {"web": "v1"}, "properties": {"fan": "on"}})
    agent = agents(unique_name, stop_grace_seconds=1.0)
    rcloud.wait_for(lambda: reported().get("apps") == {"web": "v1"} and status("web") == "Running",
                    timeout=10, what="the app running")
    assert rcloud.document(NS, unique_name).delta == {}
    data_dir = Path(agent.settings.data_dir)
    pid = pid_of(data_dir, "web")
    assert running(pid)
    assert json.loads((data_dir / "properties.json").read_text()) == {"fan": "on"}
    assert reported()["node"]["backend"] == "native"
    assert set(reported()["nodestats"]) == {"cpu", "memory", "disk"}
    instance = reported()["appstats"]["web"]["instances"][0]
    assert instance["name"] == "main-0" and instance["memory"] > 0

    rcloud.set_desired(NS, unique_name, {"apps": {"ghost": "v1"}})
    rcloud.wait_for(lambda: status("ghost") == "Failed", what="the refused app failing")
    assert "404: no app ghost at version v1" in reported()["appstats"]["ghost"]["cause"]
    assert reported()["apps"] == {"web": "v1"}

    rcloud.set_desired(NS, unique_name, {"apps": {"web": None, "ghost": None}})
    rcloud.wait_for(lambda: reported().get("apps") == {} and reported().get("appstats") == {},
                    what="the apps gone")
    assert not running(pid) and not (data_dir / "apps" / "web").exists()
