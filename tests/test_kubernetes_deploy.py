"""deploy/kubernetes: the cloud suite on Kubernetes/K3s, rendered and checked as an operator
would apply it.

Each overlay is copied to a temporary directory, given the files its README tells the
operator to write (secrets.env, the CA made by ``tether cloud server-certificate``, an
admin token), rendered with ``kubectl kustomize`` and every object validated with
kubernetes-validate. Then what the pod would run is run: the init container's copy
(paths mapped into the temp dir) and ``tether cloud serve`` with the rendered arguments
and environment, whose probe endpoints must answer 200. No cluster is needed.
"""

from __future__ import annotations

import base64
import json
import os
import pwd
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

from cloud_api.settings import CloudSettings
from tests.conftest import free_port
from tether import build_app

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy" / "kubernetes"
KUBE_VERSION = "1.37"
OVERLAYS = ("sqlite", "postgres")



def _kustomize_problem() -> str | None:
    """Why ``kubectl kustomize`` cannot render these manifests here, or None."""
    if shutil.which("kubectl") is None:
        return "kubectl is not installed (.ci/run installs kubernetes-client)"
    shown = subprocess.run(["kubectl", "version", "--client", "-o", "json"], capture_output=True,
                           text=True, timeout=30, check=False)
    try:
        version = str(json.loads(shown.stdout).get("kustomizeVersion", ""))
    except ValueError:
        version = ""
    found = re.match(r"v(\d+)", version)
    if found is None or int(found.group(1)) < 5:
        return (f"kubectl embeds kustomize {version or 'of unknown version'}; the manifests "
                "need kustomize v5 (kubectl 1.27 or newer)")
    return None


pytestmark = pytest.mark.skipif(_kustomize_problem() is not None,
                                reason=str(_kustomize_problem()))


def prepare(overlay: str, tmp_path: Path) -> Path:
    """The overlay with what its README has the operator write; returns its directory."""
    tree = tmp_path / "kubernetes"
    shutil.copytree(DEPLOY, tree)
    here = tree / "overlays" / overlay
    lines = []
    for line in (here / "secrets.env.example").read_text().splitlines():
        if line.endswith("="):
            line += secrets.token_urlsafe(24)
        lines.append(line)
    (here / "secrets.env").write_text("\n".join(lines) + "\n")
    made = CliRunner().invoke(build_app("cloud"), [
        "cloud", "server-certificate", "--data-dir", str(here / "cloud-files"),
        "--output", str(here / "cloud-files" / "broker-tls"), "--host", "mqtt.example.com"])
    assert made.exit_code == 0, made.output
    for name in ("ca.crt", "ca.key"):
        shutil.copy(here / "cloud-files" / "ca" / name, here / name)
    (here / "admin.token").write_text(secrets.token_urlsafe(32) + "\n")
    return here


def render(directory: Path) -> list[dict[str, Any]]:
    rendered = subprocess.run(["kubectl", "kustomize", str(directory)], capture_output=True,
                              text=True, timeout=60, check=False)
    assert rendered.returncode == 0, rendered.stderr
    return [obj for obj in yaml.safe_load_all(rendered.stdout) if obj]


def by_kind(objects: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    kinds: dict[str, list[dict[str, Any]]] = {}
    for obj in objects:
        kinds.setdefault(obj["kind"], []).append(obj)
    return kinds


def pod_environment(kinds: dict[str, list[dict[str, Any]]]) -> dict[str, str]:
    """What ``envFrom`` gives the cloud container: the ConfigMap's and Secret's data."""
    container = kinds["Deployment"][0]["spec"]["template"]["spec"]["containers"][0]
    env: dict[str, str] = {}
    for source in container["envFrom"]:
        if "configMapRef" in source:
            (config,) = [c for c in kinds["ConfigMap"]
                         if c["metadata"]["name"] == source["configMapRef"]["name"]]
            env.update(config["data"])
        else:
            (secret,) = [s for s in kinds["Secret"]
                         if s["metadata"]["name"] == source["secretRef"]["name"]]
            env.update({k: base64.b64decode(v).decode() for k, v in secret["data"].items()})
    return env


def test_without_the_operators_files_rendering_says_what_is_missing(tmp_path: Path) -> None:
    shutil.copytree(DEPLOY, tmp_path / "kubernetes")
    rendered = subprocess.run(["kubectl", "kustomize", str(tmp_path / "kubernetes/overlays/sqlite")],
                              capture_output=True, text=True, timeout=60, check=False)
    assert rendered.returncode != 0 and "secrets.env" in rendered.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_is_valid_kubernetes(overlay: str, tmp_path: Path) -> None:
    objects = render(prepare(overlay, tmp_path))
    for obj in objects:
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
    kinds = by_kind(objects)
    for kind in ("Namespace", "ConfigMap", "Secret", "Deployment", "Service", "PodDisruptionBudget"):
        assert kind in kinds, f"{overlay} renders no {kind}"
    assert {o["metadata"].get("namespace", "tether") for o in objects} == {"tether"}

    deployment = kinds["Deployment"][0]
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service, pdb = kinds["Service"][0], kinds["PodDisruptionBudget"][0]
    assert service["spec"]["selector"].items() <= labels.items()
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    container = pod["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= set(ports)
    assert f"--http-port={ports['http']}" in container["args"]
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] in ports
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"  # the database answers
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"

    # every setting is one `tether cloud serve` reads, every flag one it has
    env = pod_environment(kinds)
    fields = {f"TETHER_CLOUD_{name.upper()}" for name in CloudSettings.model_fields}
    assert set(env) <= fields, f"not settings of the cloud: {set(env) - fields}"
    help_text = CliRunner().invoke(build_app("cloud"), ["cloud", "serve", "--help"],
                                   env={"COLUMNS": "200"}).output
    assert container["args"][:2] == ["cloud", "serve"]
    for flag in container["args"][2:]:
        assert re.search(rf"{re.escape(flag.split('=')[0])}\b", help_text), flag
    replicas = deployment["spec"]["replicas"]
    if overlay == "sqlite":
        assert replicas == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
        assert "TETHER_CLOUD_DATABASE_URL" not in env  # SQLite in the data dir...
        claim = next(v for v in pod["spec"]["volumes"] if v["name"] == "data")
        assert claim["persistentVolumeClaim"]["claimName"] == kinds["PersistentVolumeClaim"][0][
            "metadata"]["name"]  # ...which persists
    else:
        assert replicas >= 2 and "--share-group=tether-cloud" in container["args"]
        assert env["TETHER_CLOUD_DATABASE_URL"].startswith("postgresql://")
        assert pdb["spec"]["maxUnavailable"] < replicas
    settings = CloudSettings(**{k.removeprefix("TETHER_CLOUD_").lower(): v for k, v in env.items()})
    assert settings.data_dir == Path(container["volumeMounts"][0]["mountPath"])


def test_the_sqlite_pod_runs_and_its_probes_answer(tmp_path: Path) -> None:
    """The init container's copy and the cloud container's command, with the rendered
    environment (paths mapped into the temp dir); both probe paths answer 200."""
    here = prepare("sqlite", tmp_path)
    kinds = by_kind(render(here))
    pod = kinds["Deployment"][0]["spec"]["template"]["spec"]
    data, secret_dir = tmp_path / "data", tmp_path / "secret"
    (files,) = [s for s in kinds["Secret"] if s["metadata"]["name"].startswith("tether-cloud-files")]
    secret_dir.mkdir()
    for name, value in files["data"].items():
        (secret_dir / name).write_bytes(base64.b64decode(value))
        (secret_dir / name).chmod(0o440)  # as kubelet leaves them with fsGroup
    data.mkdir()

    def mapped(text: str) -> str:
        return text.replace("/var/lib/tether", str(data)).replace("/etc/tether-secret", str(secret_dir))

    init = pod["initContainers"][0]
    copied = subprocess.run([init["command"][0], init["command"][1], mapped(init["command"][2])],
                            capture_output=True, text=True, timeout=30, check=False)
    assert copied.returncode == 0, copied.stderr
    container = pod["containers"][0]
    port = free_port()
    args = [a.replace("--http-port=9080", f"--http-port={port}") for a in container["args"]]
    args = [a.replace("--host=0.0.0.0", "--host=127.0.0.1") for a in args]
    env = {**os.environ, **{k: mapped(v) for k, v in pod_environment(kinds).items()}}
    log = tmp_path / "cloud.log"
    with log.open("wb") as sink:
        cloud = subprocess.Popen([sys.executable, str(ROOT / "tether.py"), *args], cwd=tmp_path,
                                 env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        probes = {p: container[p]["httpGet"]["path"] for p in ("readinessProbe", "livenessProbe")}
        deadline = time.monotonic() + 30
        while True:
            assert cloud.poll() is None, f"{shlex.join(args)} exited:\n{log.read_text()}"
            try:
                answers = {p: httpx.get(base + path, timeout=2) for p, path in probes.items()}
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        assert all(a.status_code == 200 for a in answers.values()), answers
        # the admin token and CA are the Secret's: the operator's token works
        token = (here / "admin.token").read_text().strip()
        nodes = httpx.get(f"{base}/v1/namespaces/default/nodes",
                          headers={"Authorization": f"Bearer {token}"}, timeout=5)
        assert nodes.status_code == 200, nodes.text
        assert (data / "ca" / "ca.crt").read_bytes() == (here / "ca.crt").read_bytes()
        assert "tether.example.com" in log.read_text()  # public URL from the ConfigMap
    finally:
        cloud.terminate()
        cloud.wait(timeout=15)


def test_the_broker_flag_the_readme_names_exists_and_is_written(tmp_path: Path) -> None:
    """deploy/kubernetes/README.md has the broker take the bridge from the pods with
    ``--password-host 0.0.0.0``: the flag exists and lands in mosquitto.conf."""
    assert "--password-host 0.0.0.0" in (DEPLOY / "README.md").read_text()
    from broker.cli import app as broker_cli

    tls = tmp_path / "tls"
    made = CliRunner().invoke(build_app("cloud"), [
        "cloud", "server-certificate", "--data-dir", str(tmp_path / "cloud"), "--output", str(tls)])
    assert made.exit_code == 0, made.output
    written = CliRunner().invoke(broker_cli, [
        "mosquitto-config", "--output", str(tmp_path / "conf"), "--cafile", str(tls / "ca.crt"),
        "--certfile", str(tls / "tether-broker.crt"), "--keyfile", str(tls / "tether-broker.key"),
        "--password-port", "1884", "--password-file", str(tmp_path / "passwd"),
        "--password-host", "0.0.0.0", "--user", pwd.getpwuid(os.geteuid()).pw_name])
    assert written.exit_code == 0, written.output
    assert "listener 1884 0.0.0.0\n" in (tmp_path / "conf" / "mosquitto.conf").read_text()
