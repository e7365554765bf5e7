"""Apply, prune and remove against the fake API server -- and a real cluster when
``KUBECONFIG`` is set (every test here is marked ``kube_real``)."""

from __future__ import annotations

import base64
import json
from typing import Any

import kubernetes_validate
import pytest
from kubernetes.client import ApiClient, VersionApi

from edge_runtime.backends.base import Backend
from edge_runtime.backends.kube import KubeBackend
from schemas.resources import AppStatus
from tests.edge_runtime.kube.backend_support import (
    KINDS,
    MANAGED,
    Live,
    backend,
    live,
    make_bundle,
    web_app,
)
from tests.edge_runtime.kube.manifests import APPLY, config_map, deployment, send

__all__ = ["backend", "live"]  # fixtures
pytestmark = pytest.mark.kube_real
SCHEMA = ".".join(kubernetes_validate.latest_version().split(".")[:2])


def only(live: Live, kind: str, app: str = "web") -> dict[str, Any]:
    (found,) = live.objects(kind, f"tether.io/app={app}")
    return found


def fingerprints(live: Live) -> dict[tuple[str, str], tuple[Any, ...]]:
    """What a write by Tether would change in every object of the namespace, by (kind, name).

    Not ``resourceVersion``, other managers or their annotations: on a real cluster
    controllers write status and ``deployment.kubernetes.io/revision`` meanwhile.
    """
    def fingerprint(obj: dict[str, Any]) -> tuple[Any, ...]:
        meta = obj["metadata"]
        ours = {k: v for k, v in (meta.get("annotations") or {}).items() if "tether" in k}
        return (
            meta["uid"], meta.get("generation"), meta.get("labels"), ours,
            json.dumps([obj.get(field) for field in ("data", "spec", "type")], sort_keys=True),
            any(entry["manager"] == "tether" for entry in meta.get("managedFields", [])),
        )

    return {(kind, obj["metadata"]["name"]): fingerprint(obj)
            for kind in KINDS for obj in live.objects(kind)}


def stored_versions(live: Live) -> dict[tuple[str, str], str]:
    return {(kind, obj["metadata"]["name"]): obj["metadata"]["resourceVersion"]
            for kind in KINDS for obj in live.objects(kind)}


def foreign_deployment(name: str, labels: dict[str, str]) -> dict[str, Any]:
    body = deployment(name)
    body["metadata"]["labels"] = labels
    return body


def test_apply_creates_the_app_labelled_and_valid(backend: KubeBackend, live: Live) -> None:
    backend.apply(make_bundle(web_app()))

    assert send(live.api, "GET", f"/api/v1/namespaces/{live.namespace}")[0] == 200
    objects = {kind: only(live, kind) for kind in ("ConfigMap", "Service", "Deployment")}
    for obj in objects.values():
        assert obj["metadata"]["labels"] == {**MANAGED, "tether.io/app": "web",
                                             "tether.io/version": "v1",
                                             **obj["metadata"]["labels"]}
        assert obj["metadata"]["annotations"]["tether.io/version"] == "v1"
    assert objects["ConfigMap"]["data"] == {"app.conf": "port=8080"}
    pod = objects["Deployment"]["spec"]["template"]
    assert pod["spec"]["containers"][0]["image"] == "nginx:1.27"
    config_map_name = objects["ConfigMap"]["metadata"]["name"]
    assert pod["spec"]["volumes"][0]["configMap"]["name"] == config_map_name
    assert objects["Service"]["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert objects["Service"]["spec"]["ports"][0]["port"] == 8080
    if live.fake is not None:
        for kind in ("ConfigMap", "Service", "Deployment"):
            for stored in live.fake.objects(kind, live.namespace):
                kubernetes_validate.validate(stored, SCHEMA, strict=True)
        writes = [r for r in live.fake.requests if r.method != "GET"]
        assert {(r.method, r.content_type, r.field_manager, r.query.get("force"))
                for r in writes} == {("PATCH", APPLY, "tether", "true")}


def test_a_new_version_updates_the_deployment_in_place(backend: KubeBackend, live: Live) -> None:
    backend.apply(make_bundle(web_app(image="nginx:1.26"), "v1"))
    before = only(live, "Deployment")
    if live.fake is not None:
        live.fake.clear_requests()

    backend.apply(make_bundle(web_app(image="nginx:1.27"), "v2"))

    after = only(live, "Deployment")
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert after["metadata"]["generation"] > before["metadata"]["generation"]
    assert after["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27"
    assert after["metadata"]["labels"]["tether.io/version"] == "v2"
    assert after["spec"]["template"]["metadata"]["labels"]["tether.io/version"] == "v2"
    assert after["spec"]["selector"] == before["spec"]["selector"]
    if live.fake is not None:
        assert not [r for r in live.fake.requests if r.method in ("POST", "PUT", "DELETE")]


def test_applying_the_same_bundle_again_changes_nothing(backend: KubeBackend, live: Live) -> None:
    bundle = make_bundle(web_app())
    backend.apply(bundle)
    first, stored = fingerprints(live), stored_versions(live)
    backend.apply(bundle)
    assert fingerprints(live) == first
    if live.fake is not None:  # no controller writes there: nothing was stored at all
        assert stored_versions(live) == stored


def test_removing_a_config_volume_prunes_its_config_map(backend: KubeBackend, live: Live) -> None:
    backend.apply(make_bundle(web_app(), "v1"))
    assert live.objects("ConfigMap", "tether.io/app=web")

    backend.apply(make_bundle(web_app(config=False), "v2"))

    assert live.objects("ConfigMap", "tether.io/app=web") == []
    assert "volumes" not in only(live, "Deployment")["spec"]["template"]["spec"]


def test_removing_a_service_prunes_its_workload_and_service(
    backend: KubeBackend, live: Live
) -> None:
    two = web_app()
    two["services"].append(
        {"name": "worker", "image": "busybox:1.36", "ports": [{"containerPort": 9}]}
    )
    backend.apply(make_bundle(two, "v1"))
    assert len(live.objects("Deployment", "tether.io/app=web")) == 2

    backend.apply(make_bundle(web_app(), "v2"))

    for kind in ("Deployment", "Service"):
        assert only(live, kind)["metadata"]["labels"]["tether.io/service"] == "api"


def test_a_daemonset_workload_and_switching_back(backend: KubeBackend, live: Live) -> None:
    backend.apply(make_bundle(web_app(workload="daemonset"), "v1"))
    daemonset = only(live, "DaemonSet")
    assert live.objects("Deployment", "tether.io/app=web") == []
    assert daemonset["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27"

    backend.apply(make_bundle(web_app(), "v2"))

    assert live.objects("DaemonSet", "tether.io/app=web") == []
    assert only(live, "Deployment")["metadata"]["name"] == daemonset["metadata"]["name"]


def test_an_image_pull_secret_per_registry(backend: KubeBackend, live: Live) -> None:
    app = {**web_app(image="registry.example.com/web:1"),
           "registries": [{"name": "private", "version": "1"}]}
    backend.apply(make_bundle(app, registries={"private": ("registry.example.com", "u", "p")}))

    (secret,) = [s for s in live.objects("Secret", "tether.io/app=web")]
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    config = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))
    assert config["auths"]["registry.example.com"]["auth"] == base64.b64encode(b"u:p").decode()
    pod = only(live, "Deployment")["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": secret["metadata"]["name"]}]


def test_secrets_and_certificates_are_stored_base64(backend: KubeBackend, live: Live) -> None:
    app = web_app(config=False, volumeMounts=[{"name": "creds", "mountPath": "/run/creds"},
                                              {"name": "tls", "mountPath": "/run/tls"}])
    app["volumes"] = [{"name": "creds", "secret": {"name": "db", "version": "1"}},
                      {"name": "tls", "certificate": {"name": "web-tls", "version": "1"}}]
    backend.apply(make_bundle(app, secrets={"db": {"password": "pä$$\nword"}},
                              certificates={"web-tls": ("CERT PEM\n", "KEY PEM\n")}))

    stored = {s["type"]: {k: base64.b64decode(v).decode() for k, v in s["data"].items()}
              for s in live.objects("Secret", "tether.io/app=web")}
    assert stored == {"Opaque": {"password": "pä$$\nword"},
                      "kubernetes.io/tls": {"tls.crt": "CERT PEM\n", "tls.key": "KEY PEM\n"}}


def test_remove_deletes_the_app_and_nothing_else(backend: KubeBackend, live: Live) -> None:
    backend.apply(make_bundle(web_app()))
    backend.apply(make_bundle({**web_app(), "name": "other"}))

    backend.remove("web")

    assert live.app_objects("web") == set()
    assert len(live.app_objects("other")) == 3
    backend.remove("web")  # idempotent
    backend.remove("never-applied")
    assert set(backend.observe()) == {"other"}


def test_objects_tether_does_not_manage_are_never_touched(backend: KubeBackend, live: Live) -> None:
    unmanaged = [
        foreign_deployment(
            "legacy", {"app.kubernetes.io/managed-by": "helm", "tether.io/app": "web"}
        ),
        foreign_deployment("web-impostor", {"tether.io/app": "web"}),
        config_map("notes", text="keep me"),
        config_map("lookalike", {"tether.io/app": "web"}, text="no managed-by label"),
    ]
    for obj in unmanaged:
        live.seed(obj)
    seeded = fingerprints(live)

    backend.apply(make_bundle(web_app(), "v1"))
    backend.apply(make_bundle(web_app(config=False), "v2"))  # prunes
    assert set(backend.observe()) == {"web"}
    backend.remove("web")

    assert fingerprints(live) == seeded  # all there, none changed, tether owns no field
    assert live.app_objects("web") == {
        ("Deployment", "legacy"), ("Deployment", "web-impostor"), ("ConfigMap", "lookalike")
    }


def test_another_managers_change_is_taken_back_by_force(backend: KubeBackend, live: Live) -> None:
    backend.apply(make_bundle(web_app()))
    name = only(live, "Deployment")["metadata"]["name"]
    path = f"/apis/apps/v1/namespaces/{live.namespace}/deployments/{name}"
    edit = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"template": {"spec": {"containers": [{"name": "api", "image": "evil:1"}]}}}}
    code, _ = send(live.api, "PATCH", f"{path}?fieldManager=kubectl&force=true", edit, APPLY)
    assert code == 200
    ours = {**edit, "spec": {"template": {"spec": {"containers": [
        {"name": "api", "image": "nginx:1.27"}]}}}}
    code, status = send(live.api, "PATCH", f"{path}?fieldManager=tether", ours, APPLY)
    assert (code, status["reason"]) == (409, "Conflict")  # without force: kubectl owns it now

    backend.apply(make_bundle(web_app()))

    pod = only(live, "Deployment")["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "nginx:1.27"


def test_observe_reports_the_applied_version(backend: KubeBackend, live: Live) -> None:
    assert backend.observe() == {}
    backend.apply(make_bundle(web_app(), "2025.11+build/7"))

    observed = backend.observe()["web"]
    assert observed.version == "2025.11+build/7"
    assert observed.status in (AppStatus.PENDING, AppStatus.RUNNING)


def test_kube_backend_is_a_backend(backend: KubeBackend) -> None:
    checked: Backend = backend  # what mypy checks; the name is what the node reports
    assert checked.name == "kube"


def test_node_facts_report_the_server_version(backend: KubeBackend, kube_api: ApiClient) -> None:
    expected = VersionApi(kube_api).get_code().git_version
    assert backend.node_facts() == {"kubernetesVersion": expected}
