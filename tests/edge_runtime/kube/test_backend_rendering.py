"""Rendering an app bundle into manifests: pure, so no cluster -- just the schema."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import kubernetes_validate
import pytest

from edge_runtime.backends.base import AppBundle
from edge_runtime.backends.kube import naming, render
from edge_runtime.backends.kube.podspecs import DEFAULT_FUNCTION_IMAGE, HANDLER_ENV
from edge_runtime.backends.kube.rendering import stale
from edge_runtime.errors import BackendError
from tests.edge_runtime.kube.backend_support import make_bundle, web_app

NS = "tether-edge"
SCHEMA = ".".join(kubernetes_validate.latest_version().split(".")[:2])
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
PEM = ("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
       "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n")

FULL = make_bundle(
    {
        "name": "plant",
        "registries": [{"name": "private", "version": "3"}],
        "volumes": [
            {"name": "conf", "config": {"name": "settings", "version": "1"}},
            {"name": "creds", "secret": {"name": "db", "version": "2"}},
            {"name": "tls", "certificate": {"name": "plant-tls", "version": "1"}},
            {"name": "data", "hostPath": {"path": "/var/lib/plant"}},
            {"name": "scratch", "emptyDir": {}},
        ],
        "services": [
            {
                "name": "api", "image": "registry.example.com/plant/api:2", "replicas": 2,
                "command": ["/bin/api"], "args": ["--port", "8080"], "env": {"MODE": "edge"},
                "ports": [
                    {"containerPort": 8080, "name": "http", "servicePort": 80},
                    {"containerPort": 9090, "protocol": "UDP", "name": "metrics-over-udp-port"},
                ],
                "resources": {"limits": {"cpu": "500m", "memory": "128Mi"},
                              "requests": {"cpu": "100m"}},
                "volumeMounts": [
                    {"name": "conf", "mountPath": "/etc/plant", "readOnly": True},
                    {"name": "creds", "mountPath": "/run/creds"},
                    {"name": "tls", "mountPath": "/run/tls"},
                    {"name": "scratch", "mountPath": "/tmp"},
                ],
            },
            {
                "name": "agent", "image": "busybox:1.36", "workload": "daemonset",
                "ports": [{"containerPort": 7000, "hostPort": 7000}],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            },
        ],
    },
    "2025.11.03+build/7",
    secrets={"db": {"password": "s3cr3t", "user": "plant"}},
    certificates={"plant-tls": PEM},
    registries={"private": ("registry.example.com", "robot", "pa:ss")},
)
LONG = make_bundle(
    {
        "name": "a" * 63,
        "services": [{"name": "b" * 63, "image": "nginx:1.27", "ports": [{"containerPort": 80}],
                      "volumeMounts": [{"name": "conf", "mountPath": "/etc/x"}]}],
        "volumes": [{"name": "conf", "config": {"name": "c" * 63, "version": "1"}}],
    },
    "x" * 64, configs={"c" * 63: {"k": "v"}},
)
FUNCTION = make_bundle(
    {
        "name": "hello", "type": "function",
        "services": [{"name": "fn", "handler": "main.handle",
                      "volumeMounts": [{"name": "code", "mountPath": "/code"}]}],
        "volumes": [{"name": "code", "config": {"name": "hello-code", "version": "1"}}],
    },
    "1", configs={"hello-code": {"main.py": "def handle(event):\n    return event\n"}},
)
DIGIT = make_bundle({**web_app(), "name": "3d-printer"}, "v1")
BUNDLES = {"web": make_bundle(web_app()), "full": FULL, "long": LONG, "function": FUNCTION,
           "digit": DIGIT}


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] == kind]


def template(objects: list[dict[str, Any]], kind: str = "Deployment") -> dict[str, Any]:
    found: dict[str, Any] = by_kind(objects, kind)[0]["spec"]["template"]
    return found


@pytest.mark.parametrize("bundle", BUNDLES.values(), ids=BUNDLES.keys())
def test_every_object_passes_the_strict_schema(bundle: AppBundle) -> None:
    for obj in render(bundle, namespace=NS):
        kubernetes_validate.validate(obj, SCHEMA, strict=True)


@pytest.mark.parametrize("bundle", BUNDLES.values(), ids=BUNDLES.keys())
def test_names_are_dns_labels_and_distinct_per_kind(bundle: AppBundle) -> None:
    objects = render(bundle, namespace=NS)
    keys = [(obj["kind"], obj["metadata"]["name"]) for obj in objects]
    assert len(set(keys)) == len(keys)
    for _, name in keys:
        assert len(name) <= 63 and DNS_1035.match(name), name
    assert all(obj["metadata"]["namespace"] == NS for obj in objects)


@pytest.mark.parametrize("bundle", BUNDLES.values(), ids=BUNDLES.keys())
def test_every_object_and_pod_template_is_labelled(bundle: AppBundle) -> None:
    version = naming.label_value(bundle.version)
    expected = {"app.kubernetes.io/managed-by": "tether", "tether.io/app": bundle.name}
    for obj in render(bundle, namespace=NS):
        metas = [obj["metadata"]]
        if "template" in obj.get("spec", {}):
            metas.append(obj["spec"]["template"]["metadata"])
            assert "tether.io/service" in metas[-1]["labels"]
        for meta in metas:
            assert expected.items() <= meta["labels"].items()
            assert meta["labels"]["tether.io/version"] == version
            assert meta["annotations"]["tether.io/version"] == bundle.version  # raw


@pytest.mark.parametrize(
    ("version", "label"),
    [("v1", "v1"), ("2025.11.03", "2025.11.03"), ("x" * 63, "x" * 63)],
)
def test_valid_versions_are_their_own_label(version: str, label: str) -> None:
    assert naming.label_value(version) == label


@pytest.mark.parametrize("version", ["1.2+build/7", "x" * 64, "-v1-", "+", "ünïcode"])
def test_other_versions_become_distinct_valid_label_values(version: str) -> None:
    label = naming.label_value(version)
    assert len(label) <= 63
    assert re.fullmatch(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?", label)
    assert label and label != naming.label_value(version + "x")


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (("a-b", "c"), ("a", "b-c")),  # joined with '-' they would be the same
        (("web", "cfg-settings"), ("web-cfg", "settings")),
        (("a" * 63, "b" * 63 + "1"), ("a" * 63, "b" * 63 + "2")),  # alike after the cut
    ],
)
def test_object_names_never_collide(first: tuple[str, ...], second: tuple[str, ...]) -> None:
    assert naming.object_name(*first) != naming.object_name(*second)
    assert naming.object_name(*first) == naming.object_name(*first)  # deterministic


def test_apps_whose_names_join_alike_render_disjoint_objects() -> None:
    one = make_bundle({**web_app(), "name": "a-b", "services": [{"name": "c", "image": "x"}]})
    two = make_bundle({**web_app(), "name": "a", "services": [{"name": "b-c", "image": "x"}]})
    keys = [{(obj["kind"], obj["metadata"]["name"]) for obj in render(bundle, namespace=NS)}
            for bundle in (one, two)]
    assert not keys[0] & keys[1]


def test_selector_leaves_the_version_out_and_stays_put_across_versions() -> None:
    v1, v2 = (render(make_bundle(web_app(), version), namespace=NS) for version in ("v1", "v2"))
    for kind in ("Deployment", "Service"):
        one, two = by_kind(v1, kind)[0], by_kind(v2, kind)[0]
        select = one["spec"]["selector"]
        select = select.get("matchLabels", select)
        assert "tether.io/version" not in select
        assert two["spec"]["selector"] == one["spec"]["selector"]
        assert two["metadata"]["name"] == one["metadata"]["name"]
    labels = template(v1)["metadata"]["labels"]
    assert by_kind(v1, "Deployment")[0]["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_config_hash_follows_the_content_the_service_mounts() -> None:
    two_services = web_app()
    two_services["services"].append({"name": "idle", "image": "busybox:1.36"})

    def hashes(content: str) -> dict[str, str]:
        objects = render(make_bundle(two_services, configs={"settings": {"app.conf": content}}),
                         namespace=NS)
        return {obj["metadata"]["labels"]["tether.io/service"]:
                obj["spec"]["template"]["metadata"]["annotations"]["tether.io/config-hash"]
                for obj in by_kind(objects, "Deployment")}

    first, same, changed = hashes("port=8080"), hashes("port=8080"), hashes("port=9090")
    assert first == same
    assert changed["api"] != first["api"]
    assert changed["idle"] == first["idle"]  # it mounts nothing that changed


def test_secrets_certificates_and_registries_are_base64_encoded() -> None:
    objects = render(FULL, namespace=NS)
    secrets = {obj["type"]: obj for obj in by_kind(objects, "Secret")}

    def data(kind: str) -> dict[str, str]:
        return {k: base64.b64decode(v).decode() for k, v in secrets[kind]["data"].items()}

    assert data("Opaque") == {"password": "s3cr3t", "user": "plant"}
    assert data("kubernetes.io/tls") == {"tls.crt": PEM[0], "tls.key": PEM[1]}
    docker = json.loads(data("kubernetes.io/dockerconfigjson")[".dockerconfigjson"])
    entry = docker["auths"]["registry.example.com"]
    assert (entry["username"], entry["password"]) == ("robot", "pa:ss")
    assert base64.b64decode(entry["auth"]).decode() == "robot:pa:ss"
    pull = secrets["kubernetes.io/dockerconfigjson"]["metadata"]["name"]
    for kind in ("Deployment", "DaemonSet"):
        assert template(objects, kind)["spec"]["imagePullSecrets"] == [{"name": pull}]


def test_pod_spec_carries_the_service_model() -> None:
    objects = render(FULL, namespace=NS)
    deployment = by_kind(objects, "Deployment")[0]
    assert deployment["spec"]["replicas"] == 2
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["/bin/api"] and container["args"] == ["--port", "8080"]
    assert container["env"] == [{"name": "MODE", "value": "edge"}]
    assert container["resources"] == {"limits": {"cpu": "500m", "memory": "128Mi"},
                                      "requests": {"cpu": "100m"}}
    assert container["ports"] == [  # a name longer than 15 characters names no container port
        {"containerPort": 8080, "protocol": "TCP", "name": "http"},
        {"containerPort": 9090, "protocol": "UDP"},
    ]
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert set(volumes) == {"conf", "creds", "tls", "scratch"}  # only what it mounts
    assert volumes["scratch"] == {"name": "scratch", "emptyDir": {}}
    (daemonset,) = by_kind(objects, "DaemonSet")
    assert "replicas" not in daemonset["spec"]
    pod = daemonset["spec"]["template"]["spec"]
    assert pod["volumes"] == [{"name": "data", "hostPath": {"path": "/var/lib/plant"}}]
    assert pod["containers"][0]["ports"] == [
        {"containerPort": 7000, "protocol": "TCP", "hostPort": 7000}
    ]


def test_services_expose_ports_and_default_the_service_port() -> None:
    objects = render(FULL, namespace=NS)
    ports = {s["metadata"]["labels"]["tether.io/service"]: s["spec"]["ports"]
             for s in by_kind(objects, "Service")}
    assert ports["api"] == [
        {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
        {"name": "metrics-over-udp-port", "port": 9090, "targetPort": 9090, "protocol": "UDP"},
    ]
    assert ports["agent"] == [{"name": "tcp-7000", "port": 7000, "targetPort": 7000,
                               "protocol": "TCP"}]
    no_ports = web_app()
    del no_ports["services"][0]["ports"]
    assert not by_kind(render(make_bundle(no_ports), namespace=NS), "Service")


def test_function_apps_run_the_default_runtime_with_their_handler_and_code() -> None:
    spec = template(render(FUNCTION, namespace=NS))["spec"]
    (container,) = spec["containers"]
    assert container["image"] == DEFAULT_FUNCTION_IMAGE
    assert {"name": HANDLER_ENV, "value": "main.handle"} in container["env"]
    assert spec["volumes"][0]["configMap"]["name"].startswith("hello-cfg-hello-code-")
    own_image = make_bundle(
        {**FUNCTION.app.wire(), "services": [{**FUNCTION.app.services[0].wire(), "image": "py:3"}]},
        "1", configs={"hello-code": {"main.py": ""}},
    )
    assert template(render(own_image, namespace=NS))["spec"]["containers"][0]["image"] == "py:3"


def test_rendering_is_deterministic_and_orders_data_before_workloads() -> None:
    first, second = render(FULL, namespace=NS), render(FULL, namespace=NS)
    assert first == second
    kinds = [obj["kind"] for obj in first]
    assert kinds == ["ConfigMap", "Secret", "Secret", "Secret", "Service", "Service",
                     "Deployment", "DaemonSet"]


@pytest.mark.parametrize(
    ("bundle", "message"),
    [
        (make_bundle(web_app(), configs={}), "pins config 'settings', which its bundle lacks"),
        (make_bundle(web_app(), configs={"settings": {"bad/key": "x"}}), "has key 'bad/key'"),
        (make_bundle({**web_app(), "registries": [{"name": "r", "version": "1"}]}),
         "pins registry 'r'"),
        (make_bundle({"name": "cli", "services": [{"name": "run", "command": ["/bin/true"]}]}),
         "has no image"),
    ],
    ids=["missing-config", "bad-key", "missing-registry", "no-image"],
)
def test_bundles_that_cannot_run_are_refused_before_anything_is_written(
    bundle: AppBundle, message: str
) -> None:
    with pytest.raises(BackendError, match=re.escape(message)) as caught:
        render(bundle, namespace=NS)
    assert caught.value.retry_after is None
    assert "\n" not in str(caught.value)


def test_stale_objects_are_those_no_longer_rendered() -> None:
    objects = render(make_bundle(web_app()), namespace=NS)
    config_map = ("ConfigMap", by_kind(objects, "ConfigMap")[0]["metadata"]["name"])
    workload = ("Deployment", by_kind(objects, "Deployment")[0]["metadata"]["name"])
    gone = ("ConfigMap", "web-cfg-old-00000000")
    assert stale(objects, [config_map, gone, workload]) == [gone]
