"""``tether apply|get|describe|delete|shadow|rollout`` against the served app (CliRunner)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.routing import iter_route_contexts
from sqlalchemy import update
from typer.testing import CliRunner, Result

from cloud_api.admin.cli import app
from cloud_api.runtime import Cloud
from cloud_api.store.models import Node
from tests.cloud_api.conftest import admin_token, seed_shadow

Tether = Callable[..., Result]

MANIFESTS = """\
kind: Node
metadata: {name: n1, labels: {site: paris}, description: a node}
spec: {mode: native}
---
kind: App
metadata: {name: web, labels: {tier: front}}
spec:
  selector: site=paris
  services: [{name: web, image: "nginx:1.27", volumeMounts: [{name: conf, mountPath: /etc/web}]}]
  volumes: [{name: conf, config: {name: web-conf}}]
  registries: [{name: hub}]
---
kind: Config
metadata: {name: web-conf}
spec: {data: {index.html: hello}}
---
kind: Secret
metadata: {name: web-secret}
spec: {data: {password: s3cret}}
---
kind: Registry
metadata: {name: hub}
spec: {address: registry.example.com, username: bot, password: pw}
---
kind: Namespace
metadata: {name: edge}
"""


def needs_routes(cloud: Cloud, *paths: str) -> None:
    served = {context.path_format for context in iter_route_contexts(cloud.app.routes)}
    missing = [path for path in paths if path not in served]
    if missing:
        pytest.skip(f"route(s) not served yet: {', '.join(missing)}")


@pytest.fixture
def tether(cloud: Cloud, api_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Tether:
    for name in ("TETHER_SERVER", "TETHER_TOKEN", "TETHER_NAMESPACE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("COLUMNS", "200")
    workdir = tmp_path / "work"
    (workdir / "data").mkdir(parents=True)
    (workdir / "data" / "admin.token").write_text(admin_token(cloud) + "\n")  # as `tether up`
    monkeypatch.chdir(workdir)

    def run(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
        return CliRunner().invoke(app, list(args), input=input, env={"TETHER_SERVER": api_url, **(env or {})})

    return run


def set_online(cloud: Cloud, node: str, *, online: bool = True) -> None:
    with cloud.store.session() as session:
        session.exec(update(Node).where(Node.name == node).values(online=online, last_seen=1_800_000_000))  # type: ignore[arg-type]
        session.commit()


def report(cloud: Cloud, tether: Tether, node: str, apps: dict[str, str], status: str) -> None:
    document = json.loads(tether("shadow", "get", node).stdout)
    seed_shadow(cloud, node, desired=document["state"]["desired"], version=document["version"] + 1,
                reported={"apps": apps, "appstats": {a: {"status": status} for a in apps},
                          "node": {"hostname": "box-1", "arch": "arm64"}})


def test_apply_twice_is_idempotent_and_get_shows_every_format(cloud: Cloud, tether: Tether, tmp_path: Path) -> None:
    needs_routes(cloud, "/v1/namespaces/{namespace}/apps/{name}", "/v1/namespaces/{namespace}/configs/{name}")
    (tmp_path / "all.yaml").write_text(MANIFESTS)
    first = tether("apply", "-f", str(tmp_path / "all.yaml"))
    assert first.exit_code == 0, first.output
    assert first.stdout.splitlines() == [
        "namespace/edge created", "config/web-conf created", "secret/web-secret created",
        "registry/hub created", "app/web created", "node/n1 created"]
    again = tether("apply", "-f", "-", input=MANIFESTS)
    assert again.exit_code == 0, again.output
    assert all(line.endswith(" unchanged") for line in again.stdout.splitlines()), again.stdout
    changed = tether("apply", "-f", "-", input=MANIFESTS.replace("hello", "bonjour"))
    assert "config/web-conf configured" in changed.stdout  # the cloud re-pins app/web itself

    table = tether("get", "apps")
    assert table.exit_code == 0 and "SELECTOR" in table.stdout and "site=paris" in table.stdout
    nodes = tether("get", "nodes")
    assert all(word in nodes.stdout for word in ("LABELS", "ONLINE", "MODE", "site=paris", "native"))
    as_yaml = yaml.safe_load(tether("get", "app", "web", "-o", "yaml").stdout)
    # -o yaml|json print manifests (what the server sets under status), which apply takes back
    assert as_yaml["metadata"]["name"] == "web"
    assert as_yaml["spec"]["volumes"][0]["config"]["version"] == "2"
    as_json = json.loads(tether("get", "secrets", "-o", "json").stdout)
    assert as_json[0]["status"]["keys"] == ["password"] and "s3cret" not in json.dumps(as_json)
    assert "edge" in tether("get", "namespaces").stdout
    assert "registry.example.com" in tether("get", "registries").stdout


def test_describe_shadow_and_delete_a_node(cloud: Cloud, tether: Tether) -> None:
    assert tether("apply", "-f", "-", input=MANIFESTS.split("---")[0]).exit_code == 0
    set_online(cloud, "n1")
    patched = tether("shadow", "patch", "n1", "--desired", '{"properties": {"fan": "on"}}')
    assert patched.exit_code == 0 and '"fan": "on"' in patched.stdout, patched.output
    from_file = tether("shadow", "patch", "n1", "--file", "-", input="properties: {fan: null}\n")
    assert from_file.exit_code == 0, from_file.output
    report(cloud, tether, "n1", {"old": "1"}, "Running")
    document = json.loads(tether("shadow", "get", "n1").stdout)
    assert "fan" not in document["state"]["desired"].get("properties", {})
    described = tether("describe", "node", "n1")
    assert described.exit_code == 0, described.output
    for text in ("site=paris", "Online", "yes", "old", "Running", "box-1", "arm64", "Delta"):
        assert text in described.stdout, text
    assert tether("delete", "node", "n1").stdout.strip() == "node/n1 deleted"
    gone = tether("get", "node", "n1")
    assert gone.exit_code == 1 and gone.stderr.startswith("error: node default/n1 not found")


def test_delete_from_a_file_goes_in_reverse(cloud: Cloud, tether: Tether) -> None:
    needs_routes(cloud, "/v1/namespaces/{namespace}/apps/{name}")
    without_namespace = MANIFESTS.rsplit("---", 1)[0]
    assert tether("apply", "-f", "-", input=without_namespace).exit_code == 0
    deleted = tether("delete", "-f", "-", input=without_namespace)
    assert deleted.exit_code == 0, deleted.output
    assert deleted.stdout.splitlines()[0] == "node/n1 deleted"
    assert tether("get", "apps", "-o", "json").stdout.strip() == "[]"
    again = tether("delete", "-f", "-", input=without_namespace)
    assert all(line.endswith("not found") for line in again.stdout.splitlines())


def _rollout_setup(cloud: Cloud, tether: Tether) -> str:
    needs_routes(cloud, "/v1/namespaces/{namespace}/apps/{name}/nodes")
    assert tether("apply", "-f", "-", input=MANIFESTS).exit_code == 0
    set_online(cloud, "n1")
    version: str = json.loads(tether("get", "app", "web", "-o", "json").stdout)["status"]["version"]
    return version


def test_rollout_status_wait_finishes_when_nodes_run_it(cloud: Cloud, tether: Tether) -> None:
    version = _rollout_setup(cloud, tether)
    later = threading.Timer(0.4, report, args=(cloud, tether, "n1", {"web": version}, "Running"))
    later.start()
    try:
        done = tether("rollout", "status", "web", "--wait", "--timeout", "20", "--interval", "0.05")
    finally:
        later.join()
    assert done.exit_code == 0, done.output
    assert "updated 1" in done.stdout and "1/1" in done.stdout


def test_rollout_status_wait_times_out_naming_the_nodes(cloud: Cloud, tether: Tether) -> None:
    _rollout_setup(cloud, tether)
    started = time.monotonic()
    late = tether("rollout", "status", "web", "--wait", "--timeout", "0.3", "--interval", "0.05")
    assert late.exit_code == 1 and time.monotonic() - started < 10
    assert late.stderr.startswith("error: rollout of app/web timed out") and "n1" in late.stderr
    report(cloud, tether, "n1", {"web": "1"}, "Failed")
    failed = tether("rollout", "status", "web")
    assert failed.exit_code == 1 and "failed on: n1" in failed.stderr


def test_flags_beat_env_beat_config_file(cloud: Cloud, tether: Tether, api_url: str, tmp_path: Path) -> None:
    (tmp_path / "xdg" / "tether").mkdir(parents=True)
    config = tmp_path / "xdg" / "tether" / "config.yaml"
    config.write_text(f"server: {api_url}\ntoken: from-file\n")
    refused = tether("get", "nodes", env={"TETHER_SERVER": None})  # type: ignore[dict-item]
    assert refused.exit_code == 1 and "401" not in refused.stderr and "--token" in refused.stderr
    by_env = tether("get", "nodes", env={"TETHER_SERVER": None, "TETHER_TOKEN": admin_token(cloud)})  # type: ignore[dict-item]
    assert by_env.exit_code == 0, by_env.output
    by_flag = tether("get", "nodes", "--token", admin_token(cloud), env={"TETHER_TOKEN": "from-env"})
    assert by_flag.exit_code == 0, by_flag.output
    config.write_text("server: http://127.0.0.1:1\n")
    assert tether("get", "nodes").exit_code == 0  # env server wins; ./data/admin.token is the token
    assert tether("get", "nodes", env={"TETHER_SERVER": None}).exit_code == 1  # type: ignore[dict-item]


@pytest.mark.parametrize(
    ("args", "stdin", "expected"),
    [
        (("get", "nodes", "--token", "wrong"), None, "error: invalid bearer token; pass a valid token with --token"),
        (("get", "nodes", "--server", "http://127.0.0.1:1"), None, "error: cannot reach the Tether API at http://127.0.0.1:1"),
        (("apply", "-f", "-"), "kind: Node\nmetadata: {name: [oops\n", "error: <stdin>: not valid YAML at line"),
        (("apply", "-f", "-"), "kind: Pod\nmetadata: {name: x}\n", "error: <stdin>: document 1: unknown kind 'Pod'"),
        (("get", "pods"), None, "error: unknown kind 'pods'"),
        (("apply", "-f", "missing.yaml"), None, "error: cannot read missing.yaml"),
        (("shadow", "patch", "n1", "--desired", "{"), None, "error: --desired is not valid JSON"),
    ],
)
def test_every_failure_is_one_line(tether: Tether, args: tuple[str, ...], stdin: str | None, expected: str) -> None:
    result = tether(*args, input=stdin)
    assert result.exit_code == 1
    assert result.stderr.startswith(expected), result.stderr
    assert result.stderr.count("\n") == 1 and result.stdout == ""


def test_apply_creates_many_nodes_in_bulk_and_reports_each_refusal(
    cloud: Cloud, tether: Tether, api: Any
) -> None:
    nodes = [f"kind: Node\nmetadata: {{name: fleet-{i:04d}, labels: {{site: lyon}}}}\n" for i in range(1200)]
    nodes.append("kind: Node\nmetadata: {name: bad-labels, labels: {'-x': y}}\n")
    first = tether("apply", "-f", "-", input="---\n".join(nodes))
    assert first.exit_code == 1, first.output
    lines = first.stdout.splitlines()
    assert len(lines) == 1201 and lines[0] == "node/fleet-0000 created"
    assert lines[-1].startswith("node/bad-labels failed:") and "label key" in lines[-1]
    assert "1 object(s) failed" in first.output
    assert len(api.get("/v1/namespaces/default/nodes").json()) == 1200
    shadow = api.get("/v1/namespaces/default/nodes/fleet-1199/shadow").json()
    assert shadow["state"]["desired"] == {"apps": {}}
    again = tether("apply", "-f", "-", input="---\n".join(nodes[:3]).replace("lyon", "nice"))
    assert again.exit_code == 0 and all(line.endswith(" configured") for line in again.stdout.splitlines())


def test_kubectl_conventions(cloud: Cloud, tether: Tether, tmp_path: Path, api_url: str) -> None:
    """-l, -A, -o wide|name, get -o yaml round-trips through apply, apply -f DIR,
    --dry-run=server, diff, version, tokens, audit, contexts, the label warning."""
    folder = tmp_path / "manifests"
    folder.mkdir()
    for index, doc in enumerate(MANIFESTS.split("---\n")):
        (folder / f"{index}.yaml").write_text(doc)
    # each write is checked alone: an app whose config is in the same dry run is refused
    dry = tether("apply", "-f", str(folder / "2.yaml"), "--dry-run=server")
    assert dry.stdout == "config/web-conf created (server dry run)\n", dry.output
    assert tether("get", "configs", "-o", "name").stdout == ""  # nothing stored
    assert tether("apply", "-f", str(folder)).exit_code == 0
    assert tether("diff", "-f", str(folder)).exit_code == 0
    changed = tether("diff", "-f", "-", input=MANIFESTS.replace("hello", "bonjour"))
    assert changed.exit_code == 1 and "+    index.html: bonjour" in changed.stdout
    exported = tether("get", "app", "web", "-o", "yaml").stdout
    assert tether("apply", "-f", "-", input=exported).stdout.strip() == "app/web unchanged"
    for kind in ("nodes", "configs", "namespaces"):  # lists too: a YAML list of manifests
        listed = tether("get", kind, "-o", "yaml").stdout
        again = tether("apply", "-f", "-", input=listed)
        assert again.exit_code == 0 and all(
            line.endswith(" unchanged") for line in again.stdout.splitlines()), again.output
    secrets = tether("apply", "-f", "-", input=tether("get", "secrets", "-o", "yaml").stdout)
    assert secrets.exit_code == 1 and "has no spec.data" in secrets.stderr  # values never shown
    assert tether("get", "nodes", "-l", "site=lyon", "-o", "name").stdout == ""
    assert tether("get", "nodes", "-l", "site=paris", "-o", "name").stdout == "node/n1\n"
    wide = tether("get", "nodes", "-A", "-o", "wide").stdout
    assert "NAMESPACE" in wide and "DESCRIPTION" in wide and "a node" in wide
    relabel = tether("apply", "-f", "-", input=MANIFESTS.split("---")[0].replace("paris", "lyon"))
    assert "app/web" in relabel.stderr and "no longer selects it" in relabel.stderr
    assert "Server Version: 0.1.0" in tether("version").stdout
    tether("apply", "-f", "-", input="kind: Node\nmetadata: {name: n9, labels: {site: lyon}}\n")
    dry_delete = tether("delete", "nodes", "-l", "site=lyon", "--dry-run=server")
    assert dry_delete.stdout.splitlines() == ["node/n1 deleted (server dry run)",
                                              "node/n9 deleted (server dry run)"]
    assert tether("delete", "nodes", "-l", "site=lyon").stdout.splitlines() == [
        "node/n1 deleted", "node/n9 deleted"]
    assert tether("get", "nodes", "-o", "name").stdout == ""

    created = tether("token", "create", "--role", "viewer", "-n", "default")
    token_id, secret = created.stdout.split()[0].split("/")[1], created.stdout.splitlines()[1]
    assert secret not in tether("token", "list").stdout
    assert tether("get", "nodes", "--token", secret).exit_code == 0
    assert tether("token", "revoke", token_id).exit_code == 0
    refused = tether("get", "nodes", "--token", secret)
    assert refused.exit_code == 1 and "revoked" in refused.stderr
    trail = tether("audit", "--kind", "token").stdout
    assert "revoke" in trail and f"token/{token_id}" in trail

    assert tether("config", "set-context", "prod", "--server", "http://127.0.0.1:1").exit_code == 0
    assert tether("config", "use-context", "prod").exit_code == 0
    assert "* " in tether("config", "get-contexts").stdout or "*" in tether("config", "get-contexts").stdout
    assert tether("get", "nodes", env={"TETHER_SERVER": None}).exit_code == 1  # type: ignore[dict-item]
    assert tether("config", "set-context", "here", "--server", str(api_url)).exit_code == 0
    by_name = tether("get", "apps", "-o", "name", env={"TETHER_SERVER": None,  # type: ignore[dict-item]
                                                       "TETHER_CONTEXT": "here"})
    assert by_name.exit_code == 0 and by_name.stdout == "app/web\n", by_name.output
    assert tether("config", "use-context", "nowhere").exit_code == 1


def test_rollout_status_names_restart_loops_and_counts_offline_apart(
    cloud: Cloud, tether: Tether
) -> None:
    _rollout_setup(cloud, tether)
    tether("apply", "-f", "-", input="kind: Node\nmetadata: {name: n2, labels: {site: paris}}\n")
    document = json.loads(tether("shadow", "get", "n1").stdout)
    seed_shadow(cloud, "n1", desired=document["state"]["desired"], version=document["version"] + 1,
                reported={"apps": {"web": "1"}, "appstats": {"web": {
                    "status": "Pending", "cause": "exit code 3",
                    "instances": [{"name": "web", "status": "Pending", "restarts": 4}]}}})
    result = tether("rollout", "status", "web", "--wait", "--timeout", "5", "--interval", "0.05")
    assert result.exit_code == 1
    assert "n1" in result.stderr and "restart loop (4 restarts): exit code 3" in result.stderr
    assert "1/1 online nodes updated; 1 offline" in result.stdout


def test_get_watch_prints_each_change(cloud: Cloud, tether: Tether, api: Any) -> None:
    assert tether("apply", "-f", "-", input=MANIFESTS.split("---")[0]).exit_code == 0
    api.post("/v1/namespaces/default/nodes", json={"name": "gone"})
    changes = [threading.Timer(0.3, set_online, args=(cloud, "n1")),
               threading.Timer(0.3, api.delete, args=("/v1/namespaces/default/nodes/gone",))]
    for timer in changes:
        timer.start()
    try:
        watched = tether("get", "nodes", "--watch", "--watch-interval", "0.05",
                         "--watch-timeout", "1.5", "-o", "name")
    finally:
        for timer in changes:
            timer.join()
    assert watched.exit_code == 0, watched.output
    lines = watched.stdout.splitlines()
    assert lines[:2] == ["node/gone", "node/n1"]  # the list, then each change once
    assert sorted(lines[2:]) == ["node/gone deleted", "node/n1"]
