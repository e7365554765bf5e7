"""Install artefacts: the command per mode, the native script, the Kubernetes manifest, and
the wheel the script installs (the cloud's own code, served by the cloud)."""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

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
        public_url="https://cloud.example:9080", namespace="default", node="n1", token=TOKEN,
        package="https://cloud.example:9080/v1/init/tether-0.1.0-py3-none-any.whl",
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
    # systemd's default KillMode (control-group) would kill the apps the agent leaves running
    assert "\nKillMode=process\n" in script


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


# -- the wheel the script installs ---------------------------------------------------------
VERSION = importlib.metadata.version("tether")
WHEEL = f"tether-{VERSION}-py3-none-any.whl"


def package_of(script: str, **env: str) -> str:
    """What the script's ``$PACKAGE`` is, run by sh up to its pip line, with ``env``."""
    head = script[: script.index('if [ "$(id -u)" -ne 0 ]')]
    shown = subprocess.run(["sh", "-c", head + 'printf %s "$PACKAGE"\n'], env=env,
                           capture_output=True, text=True, check=True)
    return shown.stdout


def test_the_script_installs_the_wheel_the_cloud_serves(
    cloud: Cloud, api: httpx.Client, anonymous: httpx.Client, tmp_path: Path
) -> None:
    cloud.create_node("n1")
    init = api.get(f"{NODES}/n1/init", params={"mode": "native"}).json()
    script = anonymous.get("/v1/init/install.sh", params={"token": init["token"]}).text
    url = f"{cloud.settings.public_url}/v1/init/{WHEEL}"
    assert '"$PREFIX/bin/pip" install --quiet --upgrade "$PACKAGE"' in script
    assert package_of(script) == url  # by default: the cloud's own wheel
    assert package_of(script, TETHER_PACKAGE="tether==0.1.0") == "tether==0.1.0"
    served = anonymous.get(urlsplit(url).path)  # no token: code, no secret
    assert served.status_code == 200
    assert served.headers["content-type"] == "application/octet-stream"
    wheel = tmp_path / WHEEL
    wheel.write_bytes(served.content)
    check_wheel(wheel)
    assert anonymous.get(urlsplit(url).path).content == served.content  # packed once
    assert anonymous.get("/v1/init/tether-0.0.1-py3-none-any.whl").status_code == 404


def check_wheel(wheel: Path) -> None:
    """A wheel pip accepts, holding the code of every package and the console script."""
    info = f"tether-{VERSION}.dist-info"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for name in ("tether.py", "edge_runtime/__init__.py", "cloud_api/packaging.py",
                     "schemas/shadow.py", "cloud_api/store/migrations/script.py.mako"):
            assert name in names
        assert not any("__pycache__" in name or name.endswith(".pyc") for name in names)
        assert "Tag: py3-none-any" in archive.read(f"{info}/WHEEL").decode()
        assert "tether = tether:main" in archive.read(f"{info}/entry_points.txt").decode()
        metadata = archive.read(f"{info}/METADATA").decode()
        assert f"Name: tether\nVersion: {VERSION}\n" in metadata
        for line in archive.read(f"{info}/RECORD").decode().splitlines():
            name, digest, size = line.split(",")
            if name == f"{info}/RECORD":
                continue
            data = archive.read(name)
            expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            assert digest == f"sha256={expected.decode()}" and int(size) == len(data)
    target = wheel.parent / "installed"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                          "--no-index", "--target", str(target), str(wheel)],
                         capture_output=True, text=True, check=False)
    assert pip.returncode == 0, pip.stderr
    imported = subprocess.run(
        [sys.executable, "-c", "import edge_runtime, tether; print(edge_runtime.__file__)"],
        env={"PYTHONPATH": str(target)}, cwd=wheel.parent, capture_output=True, text=True,
        check=False)
    assert imported.stdout.strip() == str(target / "edge_runtime" / "__init__.py"), imported.stderr


def test_a_configured_wheel_is_served_instead(
    make_settings: Callable[..., CloudSettings], tmp_path: Path
) -> None:
    own = tmp_path / "tether-0.2.0rc1-py3-none-any.whl"
    own.write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip: served as it is
    with Cloud(make_settings(edge_wheel=own)) as cloud:
        cloud.create_node("n1")
        with serving(cloud.app) as url, httpx.Client(base_url=url, timeout=30) as client:
            client.headers["Authorization"] = f"Bearer {admin_token(cloud)}"
            init = client.get(f"{NODES}/n1/init", params={"mode": "native"}).json()
            script = client.get("/v1/init/install.sh", params={"token": init["token"]}).text
            assert package_of(script) == f"{cloud.settings.public_url}/v1/init/{own.name}"
            assert client.get(f"/v1/init/{own.name}").content == own.read_bytes()
            assert client.get(f"/v1/init/{WHEEL}").status_code == 404


@pytest.mark.parametrize("name", ["tether.whl", "tether-0.1.0-cp311-cp311-linux_x86_64.whl",
                                  "tether-0.1.0.tar.gz"])
def test_the_configured_wheel_must_be_a_pure_python_wheel(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="pure-Python wheel"):
        CloudSettings(data_dir=tmp_path, edge_wheel=Path(name))
