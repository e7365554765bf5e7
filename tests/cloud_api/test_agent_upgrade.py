"""The cloud side of agent self-upgrade: wheels uploaded and served with their sha256, and
``desired.sysapps.tether`` set by node and by selector through the batched write path."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
from typer.testing import CliRunner

from cloud_api.packaging import pack_running
from cloud_api.runtime import Cloud
from schemas.sysapps import parse_target, upgraded
from tests.cloud_api.conftest import admin_token, seed_shadow

NS = "default"


def test_wheels_are_stored_served_and_targeted_by_node_and_selector(
    api: httpx.Client, anonymous: httpx.Client, cloud: Cloud, tmp_path: Path,
) -> None:
    wheel = pack_running(tmp_path, version="2.0.0")
    data = wheel.read_bytes()
    assert api.put("/v1/agent/wheels", content=b"not a zip").status_code == 400
    stored = api.put("/v1/agent/wheels", content=data).json()
    assert stored["version"] == "2.0.0"
    assert stored["sha256"] == hashlib.sha256(data).hexdigest()
    assert [w["version"] for w in api.get("/v1/agent/wheels").json()["items"]] == ["2.0.0"]
    served = anonymous.get(f"/v1/agent/wheels/{stored['filename']}")  # nodes hold no token
    assert served.status_code == 200 and served.content == data
    assert anonymous.get("/v1/agent/wheels/..%2Fadmin.token").status_code == 404

    for name, labels in (("a", {"ring": "canary"}), ("b", {"ring": "main"}), ("c", {})):
        assert api.post(f"/v1/namespaces/{NS}/nodes",
                        json={"name": name, "labels": labels}).status_code in (200, 201)
    missing = api.post(f"/v1/namespaces/{NS}/agent/upgrade", json={"version": "9.9.9"})
    assert missing.status_code == 404 and "tether agent upload" in missing.json()["message"]

    done = api.post(f"/v1/namespaces/{NS}/agent/upgrade",
                    json={"version": "2.0.0", "selector": "ring=canary", "nodes": ["c"],
                          "deadlineSeconds": 60}).json()
    assert done["nodes"] == ["a", "c"] and done["updated"] == ["a", "c"]
    again = api.post(f"/v1/namespaces/{NS}/agent/upgrade",
                     json={"version": "2.0.0", "nodes": ["a"], "deadlineSeconds": 60}).json()
    assert again["updated"] == []  # already desired: no write, no message
    desired = api.get(f"/v1/namespaces/{NS}/nodes/a/shadow").json()["state"]["desired"]
    target = parse_target(desired["sysapps"]["tether"])
    assert target.sha256 == stored["sha256"] and target.url.endswith(stored["filename"])
    assert target.deadline_seconds == 60
    b = api.get(f"/v1/namespaces/{NS}/nodes/b/shadow").json()["state"]["desired"]
    assert "sysapps" not in b

    def report(node: str, agent: dict[str, str]) -> None:
        document = api.get(f"/v1/namespaces/{NS}/nodes/{node}/shadow").json()
        seed_shadow(cloud, node, desired=document["state"]["desired"],
                    reported={"sysapps": {"tether": agent}}, version=document["version"] + 1)

    report("a", {"version": "2.0.0", "state": "Running"})
    report("c", {"version": "1.0.0", "state": "RolledBack", "target": "2.0.0", "cause": "boom"})
    status = api.get(f"/v1/namespaces/{NS}/agent/upgrade", params={"version": "2.0.0"}).json()
    assert {n: e["upgraded"] for n, e in status["nodes"].items()} == {
        "a": True, "b": None, "c": False}

    cleared = api.post(f"/v1/namespaces/{NS}/agent/upgrade",
                       json={"version": None, "nodes": ["a"]}).json()
    assert cleared["updated"] == ["a"]
    desired = api.get(f"/v1/namespaces/{NS}/nodes/a/shadow").json()["state"]["desired"]
    assert "tether" not in desired.get("sysapps", {})


def test_cli_uploads_upgrades_and_describes(api: httpx.Client, cloud: Cloud, api_url: str,
                                            tmp_path: Path) -> None:
    from cloud_api.admin.agent import app as agent_app
    from cloud_api.admin.cli import app as admin_app

    wheel = pack_running(tmp_path, version="3.0.0")
    api.post(f"/v1/namespaces/{NS}/nodes", json={"name": "edge1", "labels": {"x": "y"}})
    flags = ["--server", api_url, "--token", admin_token(cloud)]
    runner = CliRunner()
    result = runner.invoke(agent_app, ["upload", str(wheel), *flags])
    assert result.exit_code == 0 and "agent wheel 3.0.0 stored" in result.output
    result = runner.invoke(agent_app, ["upgrade", "3.0.0", "-l", "x=y", *flags])
    assert result.exit_code == 0, result.output
    assert "1 of 1 nodes updated" in result.output
    result = runner.invoke(agent_app, ["upgrade", "4.0.0", "-l", "x=y", *flags])
    assert result.exit_code == 1 and "tether agent upload" in result.output
    result = runner.invoke(admin_app, ["describe", "node", "edge1", *flags])
    assert "Agent" in result.output and "(desired 3.0.0)" in result.output
    document = api.get(f"/v1/namespaces/{NS}/nodes/edge1/shadow").json()
    seed_shadow(cloud, "edge1", desired=document["state"]["desired"], version=2, reported={
        "sysapps": {"tether": {"version": "2.9.0", "state": "Upgrading", "target": "3.0.0"}}})
    result = runner.invoke(admin_app, ["get", "nodes", "-o", "wide", *flags],
                           env={"COLUMNS": "250"})  # wide: one line per node
    assert result.exit_code == 0, result.output
    assert "AGENT" in result.output and "2.9.0 Upgrading -> 3.0.0" in result.output


def test_gate_reads_reports() -> None:
    report = {"sysapps": {"tether": {"version": "1.0", "state": "Upgrading", "target": "2.0"}}}
    assert upgraded(report, "2.0") is None
    assert upgraded({}, "2.0") is None
