"""The fake API server against the real ``kubernetes`` client: CRUD, errors, metadata."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from tests.edge_runtime.kube.manifests import MANAGED, NS, config_map, container, deployment
from tests.fake_kube import FakeKube

POD_SPEC = {"containers": [container()]}
TEMPLATE = {"metadata": {"labels": {"app": "x"}}, "spec": POD_SPEC}
# kind -> (API class, method suffix, a valid body without metadata)
KINDS: dict[str, tuple[type[Any], str, dict[str, Any]]] = {
    "ConfigMap": (client.CoreV1Api, "config_map", {"data": {"k": "v"}}),
    "Secret": (client.CoreV1Api, "secret", {"stringData": {"token": "s3cr3t"}}),
    "ServiceAccount": (client.CoreV1Api, "service_account", {}),
    "Service": (client.CoreV1Api, "service", {"spec": {"ports": [{"port": 80}]}}),
    "Pod": (client.CoreV1Api, "pod", {"spec": POD_SPEC}),
    "Deployment": (
        client.AppsV1Api, "deployment",
        {"spec": {"selector": {"matchLabels": {"app": "x"}}, "template": TEMPLATE}},
    ),
    "DaemonSet": (
        client.AppsV1Api, "daemon_set",
        {"spec": {"selector": {"matchLabels": {"app": "x"}}, "template": TEMPLATE}},
    ),
    "Role": (
        client.RbacAuthorizationV1Api, "role",
        {"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]},
    ),
    "RoleBinding": (
        client.RbacAuthorizationV1Api, "role_binding",
        {
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
            "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": NS}],
        },
    ),
}


class Kind:
    """The typed client methods of one kind: ``kind.call("read", name, NS)``."""

    def __init__(self, api_client: ApiClient, kind: str) -> None:
        api_class, self.suffix, self.body = KINDS[kind]
        self.api, self.kind = api_class(api_client), kind

    def call(self, verb: str, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.api, f"{verb}_namespaced_{self.suffix}")(*args, **kwargs)

    def manifest(self, name: str, **labels: str) -> dict[str, Any]:
        return {"metadata": {"name": name, "labels": labels}, **json.loads(json.dumps(self.body))}


def status_of(exc: ApiException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(exc.body)
    assert body["kind"] == "Status" and body["status"] == "Failure"
    assert body["code"] == exc.status
    return body


@pytest.fixture
def api(fake_kube: FakeKube) -> ApiClient:
    client.CoreV1Api(api_client := fake_kube.api_client()).create_namespace(
        {"metadata": {"name": NS}}
    )
    return api_client


@pytest.mark.parametrize("kind", list(KINDS))
def test_round_trip(api: ApiClient, fake_kube: FakeKube, kind: str) -> None:
    typed = Kind(api, kind)
    created = typed.call("create", NS, typed.manifest("one", team="a"))
    assert created.metadata.uid and created.metadata.creation_timestamp
    assert created.metadata.resource_version

    read = typed.call("read", "one", NS)
    assert (read.metadata.uid, read.metadata.labels) == (created.metadata.uid, {"team": "a"})
    listed = typed.call("list", NS, label_selector="team=a")
    assert [item.metadata.name for item in listed.items] == ["one"]
    assert int(listed.metadata.resource_version) >= int(created.metadata.resource_version)

    read.metadata.labels = {"team": "b"}
    replaced = typed.call("replace", "one", NS, read)
    assert replaced.metadata.uid == created.metadata.uid
    assert int(replaced.metadata.resource_version) > int(created.metadata.resource_version)
    stored = fake_kube.get(kind, "one", NS)
    assert stored is not None and stored["metadata"]["labels"] == {"team": "b"}

    typed.call("delete", "one", NS)
    assert fake_kube.get(kind, "one", NS) is None
    with pytest.raises(ApiException) as caught:
        typed.call("read", "one", NS)
    assert caught.value.status == 404


def test_errors_are_status_bodies_with_the_right_codes(api: ApiClient) -> None:
    typed = Kind(api, "ConfigMap")
    first = typed.call("create", NS, typed.manifest("dup"))

    with pytest.raises(ApiException) as caught:
        typed.call("create", NS, typed.manifest("dup"))
    assert status_of(caught.value)["reason"] == "AlreadyExists"

    newer = typed.call("patch", "dup", NS, {"data": {"k": "v2"}})
    with pytest.raises(ApiException) as caught:
        typed.call("replace", "dup", NS, first)  # carries the stale resourceVersion
    assert (caught.value.status, status_of(caught.value)["reason"]) == (409, "Conflict")
    newer.data = {"k": "v3"}
    assert typed.call("replace", "dup", NS, newer).data == {"k": "v3"}

    with pytest.raises(ApiException) as caught:
        typed.call("read", "nope", NS)
    assert status_of(caught.value) | {"details": None} == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'configmaps "nope" not found', "reason": "NotFound", "code": 404,
        "details": None,
    }

    with pytest.raises(ApiException) as caught:
        typed.call("create", "no-such-namespace", typed.manifest("x"))
    assert caught.value.status == 404
    assert status_of(caught.value)["message"] == 'namespaces "no-such-namespace" not found'


def test_metadata_is_maintained_like_the_real_server(api: ApiClient, fake_kube: FakeKube) -> None:
    apps = client.AppsV1Api(api)
    created = apps.create_namespaced_deployment(NS, deployment())
    assert created.metadata.generation == 1
    assert created.status.replicas is None  # create does not take .status

    labelled = apps.patch_namespaced_deployment("web", NS, {"metadata": {"labels": {"x": "y"}}})
    assert labelled.metadata.generation == 1  # metadata only: no new generation
    rescaled = apps.patch_namespaced_deployment("web", NS, {"spec": {"replicas": 3}})
    assert rescaled.metadata.generation == 2
    assert rescaled.metadata.uid == created.metadata.uid
    versions = [created, labelled, rescaled]
    assert sorted(int(d.metadata.resource_version) for d in versions) == [
        int(d.metadata.resource_version) for d in versions
    ]
    unchanged = apps.patch_namespaced_deployment("web", NS, {"spec": {"replicas": 3}})
    assert unchanged.metadata.resource_version == rescaled.metadata.resource_version

    manager = rescaled.metadata.managed_fields[-1]
    assert (manager.manager, manager.operation) == ("OpenAPI-Generator", "Update")
    assert [r.method for r in fake_kube.requests if "/deployments" in r.path] == [
        "POST", "PATCH", "PATCH", "PATCH",
    ]


def test_delete_collection_and_preconditions(api: ApiClient, fake_kube: FakeKube) -> None:
    core = client.CoreV1Api(api)
    for name, labels in (("a", MANAGED), ("b", MANAGED), ("c", {})):
        core.create_namespaced_config_map(NS, config_map(name, labels))
    core.delete_collection_namespaced_config_map(
        NS, label_selector="app.kubernetes.io/managed-by=tether"
    )
    assert [o["metadata"]["name"] for o in fake_kube.objects("ConfigMap", NS)] == [
        "c", "kube-root-ca.crt",
    ]
    wrong_uid = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid="not-it"))
    with pytest.raises(ApiException) as caught:
        core.delete_namespaced_config_map("c", NS, body=wrong_uid)
    assert caught.value.status == 409


def test_generate_name_and_dry_run(api: ApiClient, fake_kube: FakeKube) -> None:
    core = client.CoreV1Api(api)
    made = core.create_namespaced_config_map(NS, {"metadata": {"generateName": "cfg-"}})
    assert made.metadata.name.startswith("cfg-") and len(made.metadata.name) == 9
    core.create_namespaced_config_map(NS, {"metadata": {"name": "dry"}}, dry_run="All")
    assert fake_kube.get("ConfigMap", "dry", NS) is None


def test_status_writes_are_separate_from_spec_writes(api: ApiClient, fake_kube: FakeKube) -> None:
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    apps.create_namespaced_deployment(NS, deployment(replicas=2))
    injected = fake_kube.inject_status(
        "Deployment", NS, "web", {"replicas": 2, "readyReplicas": 2, "observedGeneration": 1}
    )
    assert injected["metadata"]["generation"] == 1
    assert apps.read_namespaced_deployment_status("web", NS).status.ready_replicas == 2

    body = apps.read_namespaced_deployment("web", NS)
    body.status.ready_replicas = 0
    body.spec.replicas = 3
    replaced = apps.replace_namespaced_deployment("web", NS, body)
    assert (replaced.spec.replicas, replaced.status.ready_replicas) == (3, 2)

    core.create_namespaced_pod(NS, {"metadata": {"name": "p"}, "spec": POD_SPEC})
    waiting = {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}
    fake_kube.inject_status("Pod", NS, "p", {
        "phase": "Pending",
        "containerStatuses": [{
            "name": "app", "image": "nginx:1.27", "imageID": "", "ready": False,
            "restartCount": 0, "state": {"waiting": waiting},
        }],
    })
    pod = core.read_namespaced_pod_status("p", NS)
    assert pod.status.container_statuses[0].state.waiting.reason == "ImagePullBackOff"

    with pytest.raises(Exception, match="is invalid"):
        fake_kube.inject_status("Deployment", NS, "web", {"readyReplica": 1})  # typo: refused


def test_watch_is_refused_clearly(api: ApiClient) -> None:
    with pytest.raises(ApiException) as caught:
        client.CoreV1Api(api).list_namespaced_config_map(NS, watch=True)
    assert caught.value.status == 400
    assert "watch is not supported" in status_of(caught.value)["message"]


@pytest.mark.kube_real
def test_kube_api_reaches_a_cluster(kube_api: ApiClient) -> None:
    """Against the cluster of ``KUBECONFIG`` when it is set, else against the fake."""
    assert client.VersionApi(kube_api).get_code().major == "1"


def test_kube_api_is_the_fake_unless_marked_kube_real(
    kube_api: ApiClient, fake_kube: FakeKube
) -> None:
    assert kube_api.configuration.host == fake_kube.url
    assert client.VersionApi(kube_api).get_code().git_version.startswith("v1.")
