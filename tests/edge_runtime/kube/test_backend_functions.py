"""Function apps on the kube backend: rendered to run Tether's runtime in the Tether image,
announced to the node's function proxy while a pod is ready, and -- with ``FakeKubelet``
running the pods as local processes -- invoked through the proxy, updated and removed."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge_runtime.backends.base import AppBundle
from edge_runtime.backends.kube import KubeBackend, observing
from edge_runtime.backends.kube.podspecs import FunctionRuntime
from edge_runtime.errors import BackendError
from edge_runtime.functions.directory import FunctionDirectory
from edge_runtime.functions.proxy import FunctionProxy
from edge_runtime.settings import DEFAULT_FUNCTION_IMAGE
from tests.conftest import free_port
from tests.e2e.conftest import wait_until
from tests.edge_runtime.kube.backend_support import make_bundle
from tests.fake_kube import FakeKube
from tests.fake_kube.fixtures import running_fake_kube
from tests.fake_kube.kubelet import FakeKubelet

NS = "tether-edge"
SUM_V1 = 'def handle(event, ctx):\n    return {"sum": event["a"] + event["b"]}\n'
SUM_V2 = 'def handle(event, ctx):\n    return {"sum": event["a"] + event["b"], "v": 2}\n'


def calc(code: str, version: str = "1", **service: Any) -> AppBundle:
    """App ``calc``: function ``sum`` (handler ``main.handle``), its code in config ``calc-code``."""
    app = {
        "name": "calc", "type": "function",
        "services": [{"name": "sum", "handler": "main.handle",
                      "volumeMounts": [{"name": "code", "mountPath": "/code"}], **service}],
        "volumes": [{"name": "code", "config": {"name": "calc-code", "version": version}}],
    }
    return make_bundle(app, version, configs={"calc-code": {"main.py": code}})


def kind(fake: FakeKube, name: str) -> list[dict[str, Any]]:
    return fake.objects(name, NS)


def ready(fake: FakeKube, deployment: dict[str, Any], count: int = 1) -> None:
    generation = deployment["metadata"]["generation"]
    fake.inject_status("Deployment", NS, deployment["metadata"]["name"], {
        "observedGeneration": generation, "replicas": 1, "updatedReplicas": 1,
        "readyReplicas": count, "availableReplicas": count,
    })


@pytest.fixture
def functions_dir(tmp_path: Path) -> Path:
    return tmp_path / "functions"


@pytest.fixture
def kube(fake_kube: FakeKube, functions_dir: Path) -> KubeBackend:
    return KubeBackend(fake_kube.api_client(), namespace=NS, functions_dir=functions_dir)


def test_a_function_runs_the_runtime_of_the_tether_image_behind_a_service(
    kube: KubeBackend, fake_kube: FakeKube
) -> None:
    kube.apply(calc(SUM_V1))
    [deployment] = kind(fake_kube, "Deployment")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == DEFAULT_FUNCTION_IMAGE
    assert container["command"] == [
        "python", "-m", "edge_runtime.functions.runtime", "--code-dir", "/code",
        "--handler", "main.handle", "--host", "0.0.0.0", "--port", "8080"]
    assert container["ports"] == [{"name": "function", "containerPort": 8080, "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "function"}
    [service] = kind(fake_kube, "Service")
    assert service["spec"]["ports"] == [
        {"name": "function", "port": 8080, "targetPort": "function", "protocol": "TCP"}]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["metadata"]["annotations"]["tether.io/function"] == "8080"
    assert service["spec"]["clusterIP"].startswith("10.43.")


def test_the_image_and_port_are_the_nodes_choice_and_a_clashing_port_is_refused(
    fake_kube: FakeKube,
) -> None:
    chosen = FunctionRuntime(image="registry.local/tether:9", port=9000)
    kube = KubeBackend(fake_kube.api_client(), namespace=NS, functions=chosen)
    kube.apply(calc(SUM_V1, ports=[{"containerPort": 9100, "name": "metrics"}]))
    [container] = kind(fake_kube, "Deployment")[0]["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.local/tether:9"
    assert container["command"][-1] == "9000"
    assert [p["containerPort"] for p in container["ports"]] == [9000, 9100]
    assert [p["port"] for p in kind(fake_kube, "Service")[0]["spec"]["ports"]] == [9000, 9100]
    with pytest.raises(BackendError, match="port 9000, which the function runtime listens on"):
        kube.apply(calc(SUM_V1, "2", ports=[{"containerPort": 9000}]))
    with pytest.raises(ValueError, match="not a TCP port"):
        FunctionRuntime(port=0)


def test_a_function_is_announced_only_while_a_pod_is_ready_and_withdrawn_on_removal(
    kube: KubeBackend, fake_kube: FakeKube, functions_dir: Path
) -> None:
    kube.apply(calc(SUM_V1))
    directory = FunctionDirectory(functions_dir)
    kube.observe()
    assert directory.instances("calc", "sum") == []  # no pod is ready: nothing to call
    [deployment] = kind(fake_kube, "Deployment")
    ready(fake_kube, deployment)
    kube.observe()
    cluster_ip = kind(fake_kube, "Service")[0]["spec"]["clusterIP"]
    [instance] = directory.instances("calc", "sum")
    assert (instance.url, instance.pid) == (f"http://{cluster_ip}:8080", None)
    assert json.loads((functions_dir / "calc" / "sum" / "kube.json").read_text()) == {
        "url": f"http://{cluster_ip}:8080"}
    ready(fake_kube, deployment, count=0)  # its pod went away
    kube.observe()
    assert directory.instances("calc", "sum") == []
    ready(fake_kube, deployment)
    kube.observe()
    assert directory.instances("calc", "sum")
    kube.remove("calc")
    assert directory.instances("calc", "sum") == []
    assert not (functions_dir / "calc").exists()


def test_announcements_leave_other_files_alone(
    kube: KubeBackend, fake_kube: FakeKube, functions_dir: Path
) -> None:
    native = functions_dir / "calc" / "sum" / "0.json"
    native.parent.mkdir(parents=True)
    native.write_text('{"url": "http://127.0.0.1:1", "pid": 1}')
    kube.apply(calc(SUM_V1))
    ready(fake_kube, kind(fake_kube, "Deployment")[0])
    kube.observe()
    kube.remove("calc")
    assert native.exists() and not (native.parent / "kube.json").exists()


def test_function_endpoints_need_a_cluster_ip_and_a_ready_workload() -> None:
    labels = {"tether.io/app": "calc", "tether.io/service": "sum"}
    service = {"kind": "Service", "metadata": {"labels": labels,
                                               "annotations": {"tether.io/function": "8080"}},
               "spec": {"clusterIP": "fd00::a"}}
    workload = {"kind": "DaemonSet", "metadata": {"labels": labels}, "status": {"numberReady": 2}}
    assert observing.function_endpoints([service, workload]) == {
        ("calc", "sum"): "http://[fd00::a]:8080"}
    headless = {**service, "spec": {"clusterIP": "None"}}
    assert observing.function_endpoints([headless, workload]) == {}
    plain = {**service, "metadata": {"labels": labels}}
    assert observing.function_endpoints([plain, workload]) == {}
    unready = {**workload, "status": {"numberReady": 0}}
    assert observing.function_endpoints([service, unready]) == {}


@pytest.fixture
def loopback_kube() -> Iterator[FakeKube]:
    with running_fake_kube(cluster_ip="127.0.0.1") as fake:
        yield fake


def test_a_kube_function_answers_through_the_proxy_updates_and_is_removed(
    loopback_kube: FakeKube, tmp_path: Path
) -> None:
    """Rendered command, code mount, port and probe, proven by running them."""
    functions_dir = tmp_path / "functions"
    runtime = FunctionRuntime(port=free_port())
    kube = KubeBackend(loopback_kube.api_client(), namespace=NS, functions=runtime,
                       functions_dir=functions_dir)
    kubelet = FakeKubelet(loopback_kube, namespace=NS, images={DEFAULT_FUNCTION_IMAGE},
                          workdir=tmp_path / "pods")
    with (kubelet, FunctionProxy(FunctionDirectory(functions_dir), port=0) as proxy,
          httpx.Client(base_url=proxy.url, timeout=10) as client):

        def answer() -> Any:
            kube.observe()
            response = client.post("/calc/sum", json={"a": 1, "b": 2})
            return response.json() if response.status_code == 200 else None

        kube.apply(calc(SUM_V1))
        assert wait_until(answer, timeout=20, what="v1 to answer") == {"sum": 3}, \
            kubelet.logs(kind(loopback_kube, "Deployment")[0]["metadata"]["name"])
        def changed() -> Any:
            current = answer()
            return current if current not in (None, {"sum": 3}) else None

        kube.apply(calc(SUM_V2, "2"))
        assert wait_until(changed, timeout=20, what="v2 to answer") == {"sum": 3, "v": 2}
        assert len(kubelet.started) == 2  # the changed code rolled the pod
        kube.remove("calc")
        missing = client.post("/calc/sum", json={"a": 1, "b": 2})
        assert missing.status_code == 404, missing.text


def test_watch_wakes_the_listener_when_a_workload_changes_and_stops_on_close(
    fake_kube: FakeKube, functions_dir: Path
) -> None:
    kube = KubeBackend(fake_kube.api_client(), namespace=NS, functions_dir=functions_dir,
                       change_poll_seconds=0.05)
    kube.apply(calc(SUM_V1))
    woken = threading.Event()
    kube.watch(woken.set)
    assert not woken.wait(0.5)  # nothing changed: no wake-ups
    ready(fake_kube, kind(fake_kube, "Deployment")[0])
    assert woken.wait(5), "a Deployment turning ready must wake the engine"
    with pytest.raises(RuntimeError):
        kube.watch(woken.set)
    kube.close()
    woken.clear()
    kube_dep = kind(fake_kube, "Deployment")[0]
    ready(fake_kube, kube_dep, count=0)
    assert not woken.wait(0.3)  # closed: no more calls
