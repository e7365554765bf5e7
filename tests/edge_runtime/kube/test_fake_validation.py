"""The fake refuses what a real API server refuses: bad manifests fail loudly in tests."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.edge_runtime.kube.manifests import APPLY, NS, container, deployment, namespace, send
from tests.fake_kube import FakeKube


def without_selector() -> dict[str, Any]:
    body = deployment()
    del body["spec"]["selector"]
    return body


def with_unknown_field() -> dict[str, Any]:
    body = deployment()
    body["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"
    return body


def with_string_port() -> dict[str, Any]:
    return deployment(containers=[container(ports=[{"containerPort": "80"}])])


def with_mismatched_selector() -> dict[str, Any]:
    body = deployment()
    body["spec"]["selector"]["matchLabels"] = {"app": "other"}
    return body


CASES = {
    "missing selector": (without_selector(), "spec", "'selector' is a required property"),
    "container without image": (
        deployment(containers=[{"name": "app"}]), "spec.template.spec.containers[0].image",
        "Required value",
    ),
    "unknown field (strict)": (
        with_unknown_field(), "spec.template.spec.containers.0", "'imagePullPolcy' was unexpected"
    ),
    "wrong type": (with_string_port(), "spec.template.spec.containers.0.ports.0.containerPort",
                   "is not of type 'integer'"),
    "selector not matching template": (
        with_mismatched_selector(), "spec.template.metadata.labels", "does not match"
    ),
    "mount of an undeclared volume": (
        deployment(containers=[container(volumeMounts=[{"name": "cfg", "mountPath": "/c"}])]),
        "spec.template.spec.containers[0].volumeMounts[0].name", "Not found",
    ),
    "bad name": (deployment("Web_1"), "metadata.name", "not a valid name"),
    "bad label value": (
        deployment(labels={"tether.io/version": "1.0 beta"}), "metadata.labels", "Invalid value"
    ),
}


@pytest.fixture
def apps(fake_kube: FakeKube) -> client.AppsV1Api:
    fake_kube.seed(namespace())
    return client.AppsV1Api(fake_kube.api_client())


@pytest.mark.parametrize("via", ["create", "apply"])
@pytest.mark.parametrize(("body", "field", "problem"), CASES.values(), ids=list(CASES))
def test_invalid_deployments_are_422(
    fake_kube: FakeKube, via: str, body: dict[str, Any], field: str, problem: str
) -> None:
    fake_kube.seed(namespace())
    collection = f"/apis/apps/v1/namespaces/{NS}/deployments"
    if via == "create":
        code, status = send(fake_kube.api_client(), "POST", collection, body)
    else:
        path = f"{collection}/{body['metadata']['name']}?fieldManager=tether"
        code, status = send(fake_kube.api_client(), "PATCH", path, body, APPLY)
    assert (code, status["reason"]) == (422, "Invalid")
    cause = status["details"]["causes"][0]
    assert cause["field"].startswith(field) and problem in cause["message"]
    assert fake_kube.objects("Deployment") == []


def test_invalid_through_the_typed_client_raises_api_exception(apps: client.AppsV1Api) -> None:
    with pytest.raises(ApiException) as caught:
        apps.create_namespaced_deployment(NS, deployment(containers=[{"name": "app"}]))
    assert caught.value.status == 422
    assert "spec.template.spec.containers[0].image: Required value" in caught.value.body


def test_a_patch_that_breaks_the_object_is_refused(apps: client.AppsV1Api) -> None:
    apps.create_namespaced_deployment(NS, deployment())
    with pytest.raises(ApiException) as caught:
        apps.patch_namespaced_deployment("web", NS, {"spec": {"replicas": "three"}})
    assert caught.value.status == 422
    assert apps.read_namespaced_deployment("web", NS).spec.replicas == 1


def test_selector_is_immutable(apps: client.AppsV1Api) -> None:
    apps.create_namespaced_deployment(NS, deployment())
    moved = {"spec": {"selector": {"matchLabels": {"app": "web", "v": "2"}},
                      "template": {"metadata": {"labels": {"v": "2"}}}}}
    with pytest.raises(ApiException) as caught:
        apps.patch_namespaced_deployment("web", NS, moved)
    assert caught.value.status == 422 and "field is immutable" in caught.value.body


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"metadata": {"name": "s"}, "data": {"k": "not base64!"}}, 400),
        ({"metadata": {"name": "s"}, "data": {"bad/key": "eA=="}}, 422),
    ],
)
def test_bad_secrets(fake_kube: FakeKube, body: dict[str, Any], code: int) -> None:
    fake_kube.seed(namespace())
    with pytest.raises(ApiException) as caught:
        client.CoreV1Api(fake_kube.api_client()).create_namespaced_secret(NS, body)
    assert caught.value.status == code


def test_secret_string_data_is_stored_as_data(fake_kube: FakeKube) -> None:
    fake_kube.seed(namespace())
    core = client.CoreV1Api(fake_kube.api_client())
    made = core.create_namespaced_secret(NS, {"metadata": {"name": "s"}, "stringData": {"k": "v"}})
    assert (made.data, made.string_data) == ({"k": "dg=="}, None)
