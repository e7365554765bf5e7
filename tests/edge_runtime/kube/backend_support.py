"""What the kube backend's tests share: app bundles to apply, and the cluster to look at.

``live`` reads the cluster through the API, so one test body checks the fake and (for
tests marked ``kube_real`` when ``KUBECONFIG`` is set) a real cluster alike; there it
uses a fresh namespace per test and deletes it afterwards. ``live.fake`` is the fake's
back door (``inject_status``, ``requests``) and None on a real cluster. Import the
fixtures into a test module: ``from tests.edge_runtime.kube.backend_support import
backend, live``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from kubernetes.client import ApiClient

from edge_runtime.backends.base import AppBundle
from edge_runtime.backends.kube import KubeBackend
from schemas.resources import App, Certificate, Config, Registry, Secret
from tests.edge_runtime.kube.manifests import send
from tests.fake_kube import FakeKube

MANAGED = {"app.kubernetes.io/managed-by": "tether"}
_PATHS = {
    "ConfigMap": "/api/v1/namespaces/{ns}/configmaps",
    "Secret": "/api/v1/namespaces/{ns}/secrets",
    "Service": "/api/v1/namespaces/{ns}/services",
    "Pod": "/api/v1/namespaces/{ns}/pods",
    "Deployment": "/apis/apps/v1/namespaces/{ns}/deployments",
    "DaemonSet": "/apis/apps/v1/namespaces/{ns}/daemonsets",
}
KINDS = tuple(kind for kind in _PATHS if kind != "Pod")


def web_app(*, image: str = "nginx:1.27", config: bool = True, **service: Any) -> dict[str, Any]:
    """An app ``web`` with one service ``api`` on port 8080, mounting config ``settings``."""
    api: dict[str, Any] = {"name": "api", "image": image, "ports": [{"containerPort": 8080}]}
    app: dict[str, Any] = {"name": "web", "services": [{**api, **service}]}
    if config:
        app["services"][0]["volumeMounts"] = [{"name": "conf", "mountPath": "/etc/web"}]
        app["volumes"] = [{"name": "conf", "config": {"name": "settings", "version": "1"}}]
    return app


def make_bundle(
    app: dict[str, Any], version: str = "v1", *, configs: dict[str, dict[str, str]] | None = None,
    secrets: dict[str, dict[str, str]] | None = None,
    certificates: dict[str, tuple[str, str]] | None = None,
    registries: dict[str, tuple[str, str, str]] | None = None,
) -> AppBundle:
    """A bundle from plain data; ``settings`` holds ``{"app.conf": "port=8080"}`` by default."""
    configs = {"settings": {"app.conf": "port=8080"}} if configs is None else configs
    return AppBundle(
        App.model_validate(app), version,
        configs={name: Config(name=name, data=data) for name, data in configs.items()},
        secrets={name: Secret(name=name, data=data) for name, data in (secrets or {}).items()},
        certificates={
            name: Certificate(name=name, certificate=crt, private_key=key)
            for name, (crt, key) in (certificates or {}).items()
        },
        registries={
            name: Registry(name=name, address=address, username=user, password=password)
            for name, (address, user, password) in (registries or {}).items()
        },
    )


@dataclass
class Live:
    """The cluster under test, read and written through its API."""

    api: ApiClient
    namespace: str
    fake: FakeKube | None

    def objects(self, kind: str, selector: str = "") -> list[dict[str, Any]]:
        path = _PATHS[kind].format(ns=self.namespace)
        code, body = send(self.api, "GET", f"{path}?labelSelector={quote(selector)}")
        return [{"kind": kind, **item} for item in body.get("items", [])] if code == 200 else []

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        code, body = send(self.api, "GET", f"{_PATHS[kind].format(ns=self.namespace)}/{name}")
        return body if code == 200 else None

    def app_objects(self, app: str) -> set[tuple[str, str]]:
        """(kind, name) of everything labelled with ``app``, managed or not."""
        return {
            (kind, obj["metadata"]["name"])
            for kind in KINDS for obj in self.objects(kind, f"tether.io/app={app}")
        }

    def seed(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create ``obj`` as another client would (the namespace is created if missing)."""
        send(self.api, "POST", "/api/v1/namespaces", {"metadata": {"name": self.namespace}})
        code, body = send(self.api, "POST", _PATHS[obj["kind"]].format(ns=self.namespace), obj)
        assert code == 201, body
        return body


def _real(request: pytest.FixtureRequest) -> bool:
    marked = request.node.get_closest_marker("kube_real") is not None
    return marked and bool(os.environ.get("KUBECONFIG"))


@pytest.fixture
def live(kube_api: ApiClient, request: pytest.FixtureRequest) -> Iterator[Live]:
    if not _real(request):
        yield Live(kube_api, "tether-edge", request.getfixturevalue("fake_kube"))
        return
    namespace = f"tether-test-{uuid.uuid4().hex[:8]}"
    try:
        yield Live(kube_api, namespace, None)
    finally:
        send(kube_api, "DELETE", f"/api/v1/namespaces/{namespace}")


@pytest.fixture
def backend(kube_api: ApiClient, live: Live) -> KubeBackend:
    return KubeBackend(kube_api, namespace=live.namespace)
