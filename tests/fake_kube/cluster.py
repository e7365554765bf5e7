"""``FakeKube``: the fake API server as tests hold it.

Starts the store and the HTTP server, hands out real ``kubernetes.client.ApiClient``s
pointed at it, and offers the back doors a test needs and a real cluster would not give:
reading stored objects directly, the request log, seeding objects, and playing the
controllers by writing ``.status`` (``inject_status``), since no controller runs here.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from kubernetes.client import ApiClient, Configuration

from tests.fake_kube.resources import by_kind
from tests.fake_kube.server import FakeHTTPServer, RequestRecord
from tests.fake_kube.store import Store


class FakeKube:
    """A running fake Kubernetes API server on loopback.

    ``namespace_defaults`` makes new namespaces get a ``default`` ServiceAccount and a
    ``kube-root-ca.crt`` ConfigMap, as controllers do on a real cluster; the namespaces
    ``default``, ``kube-system`` and ``kube-public`` exist from the start. ``cluster_ip``
    gives every Service that one address (``127.0.0.1`` lets a test reach what
    ``FakeKubelet`` runs); by default each gets its own from 10.43.0.0/16.
    """

    def __init__(self, *, namespace_defaults: bool = True, cluster_ip: str | None = None) -> None:
        self.store = Store(namespace_defaults=namespace_defaults, cluster_ip=cluster_ip)
        self._server = FakeHTTPServer(self.store)
        self._clients: list[ApiClient] = []
        self._running = False

    @property
    def url(self) -> str:
        return self._server.url

    def start(self) -> Self:
        self._server.start()
        self._running = True
        return self

    def stop(self) -> None:
        for client in self._clients:
            client.close()
        self._clients.clear()
        if self._running:
            self._server.stop()
            self._running = False

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def configuration(self) -> Configuration:
        # no_proxy: a proxy from the environment must never see loopback test traffic
        return Configuration(host=self.url, no_proxy="127.0.0.1,localhost")

    def api_client(self) -> ApiClient:
        """A new real client for this server; closed when the server stops."""
        client = ApiClient(self.configuration())
        self._clients.append(client)
        return client

    def write_kubeconfig(self, path: Path) -> Path:
        """A kubeconfig for this server, for a process of its own (``KUBECONFIG=path``)."""
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": "fake"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
        }
        path.write_text(json.dumps(config))
        return path

    # -- back doors for tests ----------------------------------------------------------
    def objects(self, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Stored objects of ``kind`` (all namespaces when None), full, sorted by key."""
        listed = self.store.list(by_kind(kind), namespace)
        rt = by_kind(kind)
        return [{"apiVersion": rt.api_version, "kind": rt.kind, **item} for item in listed["items"]]

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """The stored object, or None."""
        found = [obj for obj in self.objects(kind, namespace) if obj["metadata"]["name"] == name]
        return found[0] if found else None

    def seed(self, obj: dict[str, Any], *, manager: str = "kubectl-create") -> dict[str, Any]:
        """Create ``obj`` as another client would (validated, owned by ``manager``)."""
        rt = by_kind(obj["kind"])
        namespace = obj.get("metadata", {}).get("namespace") if rt.namespaced else None
        return self.store.create(rt, namespace, copy.deepcopy(obj), manager=manager)

    def inject_status(
        self, kind: str, namespace: str | None, name: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        """Replace ``.status`` as a controller would (validated; bumps resourceVersion only)."""
        return self.store.set_status(by_kind(kind), namespace, name, status)

    def append_log(
        self, namespace: str, pod: str, *lines: str, container: str | None = None,
        at: float | None = None,
    ) -> None:
        """Lines a pod's container wrote (its only container unless named), now or ``at``."""
        if container is None:
            found = self.get("Pod", pod, namespace)
            containers = (found or {}).get("spec", {}).get("containers") or [{"name": ""}]
            container = str(containers[0]["name"])
        for line in lines:
            self._server.api.logs.append(namespace, pod, container, line,
                                         time.time() if at is None else at)

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request served so far, oldest first."""
        with self._server.lock:
            return list(self._server.requests)

    def clear_requests(self) -> None:
        with self._server.lock:
            self._server.requests.clear()
