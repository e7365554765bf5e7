"""Namespaces (scope, cascade on delete) and the discovery endpoints clients read."""

from __future__ import annotations

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.edge_runtime.kube.manifests import NS, config_map, deployment, namespace, send
from tests.fake_kube import FakeKube
from tests.fake_kube.validating import SCHEMA_VERSION


def test_deleting_a_namespace_deletes_what_is_in_it(fake_kube: FakeKube) -> None:
    core = client.CoreV1Api(api := fake_kube.api_client())
    core.create_namespace(namespace())
    core.create_namespace(namespace("other"))
    core.create_namespaced_config_map(NS, config_map("cfg"))
    client.AppsV1Api(api).create_namespaced_deployment(NS, deployment())
    core.create_namespaced_config_map("other", config_map("cfg"))

    gone = core.delete_namespace(NS)
    assert gone["status"]["phase"] == "Terminating"

    assert fake_kube.objects("Deployment") == []
    assert {o["metadata"]["namespace"] for o in fake_kube.objects("ConfigMap")} == {
        "default", "kube-system", "kube-public", "other",
    }
    with pytest.raises(ApiException) as caught:
        core.create_namespaced_config_map(NS, config_map("late"))
    assert caught.value.status == 404


@pytest.mark.parametrize("via", ["create", "apply"])
def test_new_namespaces_get_what_controllers_add(fake_kube: FakeKube, via: str) -> None:
    core = client.CoreV1Api(fake_kube.api_client())
    if via == "create":
        created = core.create_namespace(namespace())
    else:
        created = core.patch_namespace(
            NS, namespace(), field_manager="tether", _content_type="application/apply-patch+yaml"
        )
    assert created.metadata.labels == {"kubernetes.io/metadata.name": NS}
    assert created.status.phase == "Active"
    assert [sa["metadata"]["name"] for sa in fake_kube.objects("ServiceAccount", NS)] == ["default"]
    assert [cm["metadata"]["name"] for cm in fake_kube.objects("ConfigMap", NS)] == [
        "kube-root-ca.crt"
    ]


def test_version_and_api_groups(fake_kube: FakeKube) -> None:
    api = fake_kube.api_client()
    version = client.VersionApi(api).get_code()
    assert (version.major, version.minor) == tuple(SCHEMA_VERSION.split("."))
    assert client.CoreApi(api).get_api_versions().versions == ["v1"]
    groups = client.ApisApi(api).get_api_versions().groups
    assert {g.name: g.preferred_version.group_version for g in groups} == {
        "apps": "apps/v1",
        "rbac.authorization.k8s.io": "rbac.authorization.k8s.io/v1",
    }


@pytest.mark.parametrize(
    ("api_class", "expected"),
    [
        (client.CoreV1Api, {"namespaces": (False, "Namespace"), "configmaps": (True, "ConfigMap"),
                            "secrets": (True, "Secret"), "services": (True, "Service"),
                            "pods": (True, "Pod"), "serviceaccounts": (True, "ServiceAccount")}),
        (client.AppsV1Api, {"deployments": (True, "Deployment"),
                            "daemonsets": (True, "DaemonSet")}),
        (client.RbacAuthorizationV1Api, {"roles": (True, "Role"),
                                         "rolebindings": (True, "RoleBinding")}),
    ],
)
def test_resource_lists(
    fake_kube: FakeKube, api_class: type, expected: dict[str, tuple[bool, str]]
) -> None:
    resources = api_class(fake_kube.api_client()).get_api_resources().resources
    main = {r.name: (r.namespaced, r.kind) for r in resources if "/" not in r.name}
    assert main == expected
    verbs = {"create", "get", "list", "patch", "update", "delete"}
    assert all(verbs <= set(r.verbs) for r in resources if "/" not in r.name)


@pytest.mark.parametrize(
    "path",
    [
        "/apis/batch/v1/namespaces/default/jobs",
        "/apis/batch/v1",
        "/api/v1/namespaces/default/configmaps/x/status",  # ConfigMaps have no status
    ],
)
def test_unknown_paths_are_404(fake_kube: FakeKube, path: str) -> None:
    code, status = send(fake_kube.api_client(), "GET", path)
    assert (code, status["reason"]) == (404, "NotFound")
