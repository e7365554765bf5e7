"""Install artefacts: the command per mode, the native script, the Kubernetes manifest."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import kubernetes_validate
import pytest
import yaml

from cloud_api.runtime import Cloud
from cloud_api.services.install import render_install_script, render_manifest
from cloud_api.settings import CloudSettings
from schemas.images import TETHER_IMAGE
from tests.cloud_api.conftest import admin_token, serving

NODES = "/v1/namespaces/default/nodes"
TOKEN = "tok-EN_x1"


def test_the_script_is_valid_sh(tmp_path: Path) -> None:
    script = render_install_script(
        public_url="https://cloud.example:9080", namespace="default", node="n1", token=TOKEN
    )
    path = tmp_path / "install.sh"
    path.write_text(script)
    bash = subprocess.run(["bash", "-n", str(path)], capture_output=True, check=False)
    assert bash.returncode == 0
    sh = subprocess.run(["sh", "-n", str(path)], capture_output=True, check=False)
    assert sh.returncode == 0
    if shutil.which("shellcheck"):
        checked = subprocess.run(
            ["shellcheck", "-s", "sh", str(path)], capture_output=True, text=True, check=False
        )
        assert checked.returncode == 0, checked.stdout
    assert "TETHER_NODE=default/n1" in script and "PRIVATE KEY" not in script
    assert "--token" not in script  # the token goes by environment, not on a command line
    assert "systemctl enable --now tether-edge.service" in script


def test_every_manifest_object_is_valid_kubernetes() -> None:
    objects = render_manifest(
        public_url="https://cloud.example:9080", namespace="default", node="n1", token=TOKEN
    )
    kinds = [o["kind"] for o in objects]
    assert kinds == ["Namespace", "ServiceAccount", "Role", "RoleBinding", "Secret", "Deployment",
                     "Service"]
    for obj in objects:
        kubernetes_validate.validate(obj, "1.37", strict=True)
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "tether-edge"
    secret = objects[4]
    assert secret["stringData"] == {"token": TOKEN}
    assert "PRIVATE KEY" not in yaml.safe_dump_all(objects)
    command = objects[5]["spec"]["template"]["spec"]["containers"][0]["command"][-1]
    assert "tether edge activate" in command and "tether edge run --backend kube" in command
    agent = objects[5]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in agent["env"]}
    assert env["TETHER_EDGE_FUNCTION_IMAGE"] == agent["image"] == TETHER_IMAGE  # runtimes too
    assert env["TETHER_EDGE_FUNCTION_PROXY_HOST"] == "0.0.0.0"  # apps reach it via the Service
    proxy = objects[6]
    assert proxy["spec"]["selector"].items() <= objects[5]["spec"]["template"]["metadata"]["labels"].items()
    assert proxy["spec"]["ports"][0]["targetPort"] == agent["ports"][0]["name"]


@pytest.mark.parametrize(("mode", "path"), [("native", "install.sh"), ("kube", "manifest.yaml")])
def test_init_commands_fetch_the_artefacts(
    cloud: Cloud, api: httpx.Client, anonymous: httpx.Client, mode: str, path: str
) -> None:
    cloud.create_node("n1")
    init = api.get(f"{NODES}/n1/init", params={"mode": mode}).json()
    assert f"/v1/init/{path}?token={init['token']}" in init["command"]
    fetched = anonymous.get(f"/v1/init/{path}", params={"token": init["token"]})
    assert fetched.status_code == 200 and fetched.headers["cache-control"] == "no-store"
    assert "default/n1" in fetched.text
    if mode == "kube":
        for obj in yaml.safe_load_all(fetched.text):
            kubernetes_validate.validate(obj, "1.37", strict=True)
    # fetching does not spend the token; activating does, and then the script is gone
    assert anonymous.post("/v1/activate", json={"token": init["token"]}).status_code == 200
    assert anonymous.get(f"/v1/init/{path}", params={"token": init["token"]}).status_code == 401


def test_the_manifest_runs_the_image_the_cloud_is_told(
    make_settings: Callable[..., CloudSettings], tmp_path: Path
) -> None:
    """An operator's mirror reaches both the agent and the function runtimes it starts."""
    mirror = "registry.plant.local/tether:0.1.0"
    with Cloud(make_settings(edge_image=mirror)) as cloud:
        cloud.create_node("n1")
        with serving(cloud.app) as url, httpx.Client(base_url=url, timeout=30) as client:
            client.headers["Authorization"] = f"Bearer {admin_token(cloud)}"
            init = client.get(f"{NODES}/n1/init", params={"mode": "kube"}).json()
            fetched = client.get("/v1/init/manifest.yaml", params={"token": init["token"]})
    objects = list(yaml.safe_load_all(fetched.text))
    agent = objects[5]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in agent["env"]}
    assert agent["image"] == env["TETHER_EDGE_FUNCTION_IMAGE"] == mirror
