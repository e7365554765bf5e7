"""Patch formats on the fake: strategic merge by merge key, JSON merge, JSON patch."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.edge_runtime.kube.manifests import NS, container, deployment, namespace
from tests.fake_kube import FakeKube
from tests.fake_kube.merging import strategic_merge_patch

SMP = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"


@pytest.fixture
def apps(fake_kube: FakeKube) -> client.AppsV1Api:
    fake_kube.seed(namespace())
    api = client.AppsV1Api(fake_kube.api_client())
    api.create_namespaced_deployment(NS, deployment(containers=[
        container("app", "nginx:1.26", env=[{"name": "A", "value": "1"}],
                  ports=[{"containerPort": 80, "name": "http"}]),
        container("sidecar", "busybox:1"),
    ]))
    return api


def pod_patch(containers: list[dict[str, Any]]) -> dict[str, Any]:
    return {"spec": {"template": {"spec": {"containers": containers}}}}


def test_strategic_merge_patches_containers_by_name(apps: client.AppsV1Api) -> None:
    patched = apps.patch_namespaced_deployment("web", NS, pod_patch([
        {"name": "app", "image": "nginx:1.27", "env": [{"name": "B", "value": "2"}],
         "ports": [{"containerPort": 80, "protocol": "TCP"}]},
        {"name": "new", "image": "redis:7"},
    ]), _content_type=SMP)
    containers = {c.name: c for c in patched.spec.template.spec.containers}
    assert list(containers) == ["app", "sidecar", "new"]
    assert containers["app"].image == "nginx:1.27"
    assert [(e.name, e.value) for e in containers["app"].env] == [("A", "1"), ("B", "2")]
    port = containers["app"].ports[0]
    assert (port.container_port, port.name, port.protocol) == (80, "http", "TCP")
    assert containers["sidecar"].image == "busybox:1"
    assert patched.metadata.generation == 2


def test_the_client_sends_object_patches_as_strategic_merge(
    apps: client.AppsV1Api, fake_kube: FakeKube
) -> None:
    apps.patch_namespaced_deployment("web", NS, pod_patch([{"name": "app", "image": "x:2"}]))
    assert fake_kube.requests[-1].content_type == SMP
    stored = fake_kube.get("Deployment", "web", NS)
    assert stored is not None and len(stored["spec"]["template"]["spec"]["containers"]) == 2


def test_merge_patch_replaces_lists_whole(apps: client.AppsV1Api) -> None:
    patched = apps.patch_namespaced_deployment(
        "web", NS, pod_patch([{"name": "only", "image": "x:1"}]), _content_type=MERGE
    )
    assert [c.name for c in patched.spec.template.spec.containers] == ["only"]


def test_json_patch(apps: client.AppsV1Api) -> None:
    patched = apps.patch_namespaced_deployment("web", NS, [
        {"op": "test", "path": "/spec/replicas", "value": 1},
        {"op": "replace", "path": "/spec/replicas", "value": 4},
        {"op": "add", "path": "/metadata/labels/extra", "value": "yes"},
    ])
    assert (patched.spec.replicas, patched.metadata.labels["extra"]) == (4, "yes")
    with pytest.raises(ApiException) as caught:
        apps.patch_namespaced_deployment(
            "web", NS, [{"op": "test", "path": "/spec/replicas", "value": 1}]
        )
    assert caught.value.status == 400


@pytest.mark.parametrize(
    ("live", "patch", "expected"),
    [
        ({"a": 1, "b": 2}, {"b": None, "c": 3}, {"a": 1, "c": 3}),
        ({"m": {"x": 1}}, {"m": {"$patch": "replace", "y": 2}}, {"m": {"y": 2}}),
        ({"args": ["a", "b"]}, {"args": ["c"]}, {"args": ["c"]}),  # atomic list
        (
            {"volumes": [{"name": "a", "emptyDir": {}}, {"name": "b", "emptyDir": {}}]},
            {"volumes": [{"name": "a", "$patch": "delete"}]},
            {"volumes": [{"name": "b", "emptyDir": {}}]},
        ),
        (
            {"volumeMounts": [{"name": "v", "mountPath": "/a"}]},
            {"volumeMounts": [{"name": "v", "mountPath": "/b"}]},  # keyed by mountPath
            {"volumeMounts": [{"name": "v", "mountPath": "/a"}, {"name": "v", "mountPath": "/b"}]},
        ),
        (
            {"ports": [{"port": 80, "name": "http"}]},  # Service ports: keyed by port
            {"ports": [{"port": 80, "targetPort": 8080}], "$setElementOrder/ports": [{"port": 80}]},
            {"ports": [{"port": 80, "name": "http", "targetPort": 8080}]},
        ),
        (
            {"finalizers": ["a", "b"]},
            {"$deleteFromPrimitiveList/finalizers": ["a"]},
            {"finalizers": ["b"]},
        ),
    ],
)
def test_strategic_merge_rules(
    live: dict[str, Any], patch: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert strategic_merge_patch(live, patch) == expected
