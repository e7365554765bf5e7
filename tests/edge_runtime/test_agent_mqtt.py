"""The agent against a real broker (Mosquitto) and a minimal in-test cloud."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edge_runtime.agent import EdgeAgent
from edge_runtime.errors import AlreadyRunning
from edge_runtime.settings import EdgeSettings
from tests.edge_runtime.fakes import MirrorReconciler
from tests.edge_runtime.mqttcloud import MqttCloud

pytestmark = pytest.mark.mosquitto
StartAgent = Callable[..., EdgeAgent]
NS = "default"


Recording = MirrorReconciler  # remembers every desired section it was handed


def wait_reported(cloud: MqttCloud, node: str, key: str, value: object, what: str) -> None:
    cloud.wait_for(lambda: cloud.document(NS, node).reported.get(key) == value, what=what)


def test_agent_fetches_reports_and_follows_desired(
    cloud: MqttCloud, agents: StartAgent, unique_name: str
) -> None:
    cloud.set_desired(NS, unique_name, {"properties": {"fan": "on"}})
    agents(unique_name)
    wait_reported(cloud, unique_name, "properties", {"fan": "on"}, "the first report")
    node = cloud.document(NS, unique_name).reported["node"]
    assert set(node) == {"hostname", "os", "arch", "kernel", "python", "backend"}
    assert node["backend"] == "native"
    status = cloud.last_status(NS, unique_name)
    assert status is not None and status["online"] is True

    cloud.set_desired(NS, unique_name, {"properties": {"fan": "off", "mode": "eco"}})
    wait_reported(cloud, unique_name, "properties", {"fan": "off", "mode": "eco"}, "the delta")
    assert cloud.document(NS, unique_name).delta == {}


def test_restarted_agent_resumes_from_its_cache(
    cloud: MqttCloud, agents: StartAgent, unique_name: str
) -> None:
    cloud.set_desired(NS, unique_name, {"properties": {"fan": "on"}})
    first = agents(unique_name)
    wait_reported(cloud, unique_name, "properties", {"fan": "on"}, "the first report")
    first.stop()
    cloud.wait_for(lambda: (cloud.last_status(NS, unique_name) or {}).get("online") is False,
                   what="the clean offline status")
    time.sleep(0.2)  # a will would come now
    statuses = [status["online"] for status in cloud.statuses[(NS, unique_name)]]
    assert statuses[-2:] == [True, False]  # one offline: the agent's own, then DISCONNECT

    cloud.set_desired(NS, unique_name, {"properties": {"fan": "off"}})  # while the node is down
    recording = Recording()
    agents(unique_name, reconciler=recording)
    assert recording.calls[0] == {"properties": {"fan": "on"}}  # from the cache, before any I/O
    wait_reported(cloud, unique_name, "properties", {"fan": "off"}, "the missed change")


def test_agent_without_broker_runs_the_cached_state(
    cloud: MqttCloud, agents: StartAgent, unique_name: str
) -> None:
    cloud.set_desired(NS, unique_name, {"properties": {"fan": "on"}})
    first = agents(unique_name)
    wait_reported(cloud, unique_name, "properties", {"fan": "on"}, "the first report")
    first.stop()
    recording = Recording()
    nothing_listens = "mqtt://127.0.0.1:9"  # the discard port
    offline = agents(unique_name, url=nothing_listens, reconciler=recording)
    assert recording.calls == [{"properties": {"fan": "on"}}]
    assert offline.link is not None and not offline.link.connected


def test_second_agent_on_one_data_dir_is_refused(
    agents: StartAgent, unique_name: str, tmp_path: Path
) -> None:
    agents(unique_name)
    with pytest.raises(AlreadyRunning, match="another edge agent is running"):
        EdgeAgent(EdgeSettings(data_dir=tmp_path / unique_name)).start()


def test_reports_pushed_from_another_thread_reach_the_cloud(
    cloud: MqttCloud, agents: StartAgent, unique_name: str
) -> None:
    agent = agents(unique_name)
    cloud.wait_for(lambda: "node" in cloud.document(NS, unique_name).reported,
                   what="the first report")
    facts = cloud.document(NS, unique_name).reported["node"]
    agent.report({"node": facts, "nodestats": {"cpu": 0.5}})
    wait_reported(cloud, unique_name, "nodestats", {"cpu": 0.5}, "the pushed report")
