"""Server-side apply on the fake: create, update in place, ownership, conflicts, removal.

This is how the kube backend writes, so these tests pin the semantics documented in
``tests/fake_kube/ownership.py`` against the real client's ``patch_*`` calls with
``application/apply-patch+yaml``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient

from tests.edge_runtime.kube.manifests import APPLY, NS, container, deployment, namespace
from tests.fake_kube import FakeKube


@pytest.fixture
def apps(fake_kube: FakeKube) -> client.AppsV1Api:
    fake_kube.seed(namespace())
    return client.AppsV1Api(fake_kube.api_client())


def apply(
    apps: client.AppsV1Api, body: dict[str, Any], *, manager: str = "tether", force: bool = False
) -> client.V1Deployment:
    return apps.patch_namespaced_deployment(
        body["metadata"]["name"], NS, body, field_manager=manager, force=force,
        _content_type=APPLY,
    )


def owners(obj: client.V1Deployment) -> dict[str, str]:
    return {entry.manager: entry.operation for entry in obj.metadata.managed_fields}


def test_apply_creates_then_updates_in_place(apps: client.AppsV1Api, fake_kube: FakeKube) -> None:
    created = apply(apps, deployment(containers=[container(image="nginx:1.26")]))
    assert owners(created) == {"tether": "Apply"}
    assert created.metadata.generation == 1

    updated = apply(apps, deployment(containers=[container(image="nginx:1.27")]))
    assert updated.metadata.uid == created.metadata.uid
    assert updated.metadata.generation == 2
    assert int(updated.metadata.resource_version) > int(created.metadata.resource_version)
    assert updated.spec.template.spec.containers[0].image == "nginx:1.27"

    again = apply(apps, deployment(containers=[container(image="nginx:1.27")]))
    assert again.metadata.resource_version == updated.metadata.resource_version  # no-op

    calls = [(r.method, r.content_type, r.field_manager, r.code) for r in fake_kube.requests]
    assert calls == [("PATCH", APPLY, "tether", 201)] + [("PATCH", APPLY, "tether", 200)] * 2


def test_apply_conflicts_with_another_manager_unless_forced(apps: client.AppsV1Api) -> None:
    apply(apps, deployment(replicas=2))
    scale = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
             "spec": {"replicas": 5}}

    with pytest.raises(ApiException) as caught:
        apply(apps, scale, manager="hpa")
    status = json.loads(caught.value.body)
    assert (caught.value.status, status["reason"]) == (409, "Conflict")
    assert status["message"] == (
        'Apply failed with 1 conflict: conflict with "tether": .spec.replicas'
    )
    assert status["details"]["causes"][0]["field"] == ".spec.replicas"

    forced = apply(apps, scale, manager="hpa", force=True)
    assert forced.spec.replicas == 5
    assert owners(forced) == {"tether": "Apply", "hpa": "Apply"}
    tether = next(e for e in forced.metadata.managed_fields if e.manager == "tether")
    assert "f:replicas" not in tether.fields_v1["f:spec"]  # ownership moved to hpa

    same_value = apply(apps, {**scale, "metadata": {"name": "web", "labels": {"x": "1"}}},
                       manager="other")
    assert same_value.spec.replicas == 5  # equal value: shared, not a conflict


def test_fields_a_manager_stops_applying_are_removed(apps: client.AppsV1Api) -> None:
    env = [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    apply(apps, deployment(labels={"keep": "x", "drop": "y"},
                           containers=[container(env=env), container("sidecar", "busybox")]))
    trimmed = apply(apps, deployment(labels={"keep": "x"}, containers=[container(env=env[:1])]))
    assert "drop" not in trimmed.metadata.labels and trimmed.metadata.labels["keep"] == "x"
    assert [c.name for c in trimmed.spec.template.spec.containers] == ["app"]
    assert [e.name for e in trimmed.spec.template.spec.containers[0].env] == ["A"]

    no_replicas = apply(apps, deployment(labels={"keep": "x"}, replicas=None))
    assert no_replicas.spec.replicas is None  # the fake does no defaulting


def test_omitted_field_owned_by_someone_else_stays(apps: client.AppsV1Api) -> None:
    apply(apps, deployment(labels={"shared": "v", "stolen": "1"}))
    helm = {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"shared": "v"}}}
    apply(apps, helm, manager="helm")  # same value: co-owned
    apps.patch_namespaced_deployment(  # a changing update takes the field from tether
        "web", NS, {"metadata": {"labels": {"stolen": "2"}}}, field_manager="kubectl"
    )
    result = apply(apps, deployment())
    assert result.metadata.labels["shared"] == "v"
    assert result.metadata.labels["stolen"] == "2"
    assert owners(result) == {"tether": "Apply", "helm": "Apply", "kubectl": "Update"}


def without_kind() -> dict[str, Any]:
    body = deployment()
    del body["kind"]
    return body


@pytest.mark.parametrize(
    ("name", "body", "manager", "message"),
    [
        ("web", deployment(), None, "fieldManager is required"),
        ("other", deployment(), "tether", "does not match the name on the URL"),
        ("web", without_kind(), "tether", "with apiVersion and kind"),
    ],
)
def test_bad_apply_requests_are_400(
    apps: client.AppsV1Api, name: str, body: dict[str, Any], manager: str | None, message: str
) -> None:
    with pytest.raises(ApiException) as caught:
        apps.patch_namespaced_deployment(
            name, NS, body, field_manager=manager, _content_type=APPLY
        )
    assert caught.value.status == 400 and message in str(caught.value.body)


def test_dynamic_client_server_side_apply(fake_kube: FakeKube, tmp_path: Path) -> None:
    """The dynamic client discovers the fake's APIs and applies through them."""
    fake_kube.seed(namespace())
    dynamic = DynamicClient(fake_kube.api_client(), cache_file=str(tmp_path / "discovery.json"))
    deployments = dynamic.resources.get(api_version="apps/v1", kind="Deployment")
    applied = deployments.server_side_apply(
        body=deployment(), namespace=NS, field_manager="tether", force_conflicts=True
    )
    assert applied.metadata.managedFields[0].manager == "tether"
    roles = dynamic.resources.get(api_version="rbac.authorization.k8s.io/v1", kind="Role")
    assert roles.namespaced and roles.get(namespace=NS).items == []


def service_body(port: int = 80, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": NS},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": port}], **spec}}


def test_services_get_a_cluster_ip_that_stays_and_cannot_change(fake_kube: FakeKube) -> None:
    fake_kube.seed(namespace())
    core = client.CoreV1Api(fake_kube.api_client())
    first = core.patch_namespaced_service("web", NS, service_body(), field_manager="tether",
                                          _content_type=APPLY)
    assert first.spec.cluster_ip.startswith("10.43.") and first.spec.cluster_ips == [first.spec.cluster_ip]
    again = core.patch_namespaced_service("web", NS, service_body(81), field_manager="tether",
                                          _content_type=APPLY)
    assert again.spec.cluster_ip == first.spec.cluster_ip and again.spec.ports[0].port == 81
    with pytest.raises(ApiException) as refused:
        core.patch_namespaced_service("web", NS, service_body(clusterIP="10.43.9.9"),
                                      field_manager="tether", _content_type=APPLY, force=True)
    assert refused.value.status == 422 and "immutable" in refused.value.body
    other = core.create_namespaced_service(NS, {**service_body(), "metadata": {"name": "other"}})
    assert other.spec.cluster_ip != first.spec.cluster_ip
