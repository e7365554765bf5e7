"""Failures: every one a one-line ``BackendError``, retryable exactly when waiting helps;
and finding the cluster from the environment."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiClient, Configuration, CoreV1Api
from kubernetes.client.exceptions import ApiException

from edge_runtime.backends.kube import KubeBackend
from edge_runtime.backends.kube import backend as backend_module
from edge_runtime.backends.kube.cluster import (
    FORBIDDEN_DELAY,
    TRANSIENT_DELAY,
    Cluster,
    failure,
)
from edge_runtime.errors import BackendError
from tests.edge_runtime.kube.backend_support import Live, backend, live, make_bundle, web_app
from tests.edge_runtime.kube.manifests import send
from tests.fake_kube import FakeKube

__all__ = ["backend", "live"]  # fixtures
OPERATIONS: dict[str, Callable[[KubeBackend], Any]] = {
    "apply": lambda b: b.apply(make_bundle(web_app())),
    "remove": lambda b: b.remove("web"),
    "observe": lambda b: b.observe(),
    "node_facts": lambda b: b.node_facts(),
}


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize("operation", OPERATIONS.values(), ids=OPERATIONS.keys())
def test_a_stopped_api_server_is_retryable(
    fake_kube: FakeKube, backend: KubeBackend, operation: Callable[[KubeBackend], Any]
) -> None:
    fake_kube.stop()
    with pytest.raises(BackendError) as caught:
        operation(backend)
    assert caught.value.retry_after == TRANSIENT_DELAY
    message = str(caught.value)
    assert f"cannot reach the Kubernetes API at {fake_kube.url}" in message
    assert "\n" not in message


def test_nothing_listening_is_retryable() -> None:
    url = f"http://127.0.0.1:{unused_port()}"
    with (
        ApiClient(Configuration(host=url, no_proxy="127.0.0.1")) as api,
        pytest.raises(BackendError, match="check that K3s/Kubernetes is running") as caught,
    ):
        KubeBackend(api).observe()
    assert caught.value.retry_after == TRANSIENT_DELAY


def status_body(code: int, reason: str, message: str) -> str:
    return json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                       "reason": reason, "message": message, "code": code})


@pytest.mark.parametrize(
    ("code", "headers", "retry_after", "says"),
    [
        (503, {}, TRANSIENT_DELAY, "the API server failed (503: etcd leader changed)"),
        (500, {}, TRANSIENT_DELAY, "the API server failed (500: etcd leader changed)"),
        (429, {"Retry-After": "7"}, 7.0, "the API server failed (429: etcd leader changed)"),
        (401, {}, FORBIDDEN_DELAY, "check the kubeconfig or the RBAC"),
        (403, {}, FORBIDDEN_DELAY, "check the kubeconfig or the RBAC"),
        (404, {}, TRANSIENT_DELAY, "the cluster changed meanwhile (404"),
        (409, {}, TRANSIENT_DELAY, "the cluster changed meanwhile (409"),
        (422, {}, None, "Kubernetes refused it (422: etcd leader changed): fix the app"),
        (400, {}, None, "Kubernetes refused it (400"),
    ],
)
def test_api_errors_are_translated(
    code: int, headers: dict[str, str], retry_after: float | None, says: str
) -> None:
    error = ApiException(status=code, reason="Reason",
                         body=status_body(code, "X", "etcd leader\nchanged"))
    error.headers = headers
    with pytest.raises(BackendError) as caught, failure("applying Deployment web", "h"):
        raise error
    assert caught.value.retry_after == retry_after
    assert str(caught.value).startswith("applying Deployment web: ")
    assert says in str(caught.value)
    assert caught.value.__cause__ is error


def test_a_body_that_is_no_status_falls_back_to_the_reason() -> None:
    with pytest.raises(BackendError, match=r"\(502: Bad Gateway\)"), failure("x", "h"):
        raise ApiException(status=502, reason="Bad Gateway", body="<html>proxy</html>")


def test_a_call_the_client_refuses_is_a_bug_not_a_retry(fake_kube: FakeKube) -> None:
    core = CoreV1Api(fake_kube.api_client())
    with (
        pytest.raises(BackendError, match="this is a bug in Tether") as caught,
        failure("deleting ConfigMap 123", fake_kube.url),
    ):
        core.delete_namespaced_config_map(123, "tether-edge")  # type: ignore[arg-type]
    assert caught.value.retry_after is None


@pytest.mark.kube_real
def test_an_object_the_server_refuses_is_not_retryable(backend: KubeBackend, live: Live) -> None:
    app = web_app(
        ports=[{"containerPort": 80, "name": "web"}, {"containerPort": 81, "name": "web"}]
    )
    with pytest.raises(BackendError) as caught:
        backend.apply(make_bundle(app))
    assert caught.value.retry_after is None
    assert str(caught.value).startswith("applying Service web-api-")
    assert "fix the app" in str(caught.value) and "\n" not in str(caught.value)


def test_a_namespace_deleted_meanwhile_is_restored_by_the_next_apply(
    backend: KubeBackend, live: Live
) -> None:
    backend.apply(make_bundle(web_app()))
    assert send(live.api, "DELETE", f"/api/v1/namespaces/{live.namespace}")[0] == 200

    with pytest.raises(BackendError, match="the cluster changed meanwhile") as caught:
        backend.apply(make_bundle(web_app()))
    assert caught.value.retry_after == TRANSIENT_DELAY
    backend.apply(make_bundle(web_app()))

    assert live.objects("Deployment", "tether.io/app=web")


@pytest.mark.kube_real
def test_removing_what_is_already_gone_is_fine(backend: KubeBackend, live: Live) -> None:
    backend.apply(make_bundle(web_app()))
    (deployment,) = live.objects("Deployment", "tether.io/app=web")
    name = deployment["metadata"]["name"]
    cluster = Cluster(live.api, namespace=live.namespace, field_manager="tether",
                      request_timeout=10.0)
    assert cluster.delete("Deployment", name) is True
    assert cluster.delete("Deployment", name) is False


# -- from_environment ------------------------------------------------------------------

@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT",
                 "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.kube/config
    monkeypatch.setattr(backend_module, "K3S_KUBECONFIG", tmp_path / "no-k3s.yaml")
    return tmp_path


def test_from_environment_without_any_configuration(clean_env: Path) -> None:
    expected = "set KUBECONFIG .* or run the agent in-cluster"
    with pytest.raises(BackendError, match=expected) as caught:
        KubeBackend.from_environment()
    assert caught.value.retry_after is None
    assert "\n" not in str(caught.value)


def test_from_environment_in_a_pod_without_its_token(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.43.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    with pytest.raises(BackendError, match="Service token file does not exist"):
        KubeBackend.from_environment()


@pytest.mark.parametrize("where", ["KUBECONFIG", "argument", "k3s"])
def test_from_environment_reads_a_kubeconfig(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, fake_kube: FakeKube, where: str
) -> None:
    path = fake_kube.write_kubeconfig(clean_env / "config.yaml")
    if where == "KUBECONFIG":
        monkeypatch.setenv("KUBECONFIG", str(path))
    if where == "k3s":
        monkeypatch.setattr(backend_module, "K3S_KUBECONFIG", path)
    backend = KubeBackend.from_environment(kubeconfig=str(path) if where == "argument" else None)
    try:
        assert backend.namespace == "tether-edge"
        assert backend.node_facts() == {"kubernetesVersion": "v1.37.0-fake"}
    finally:
        backend.close()
