"""Label and field selectors of every form, through the real client's list calls.

Pruning lists what Tether manages by label; these tests pin down that the fake matches
exactly what the API server matches, including objects that lack the label.
"""

from __future__ import annotations

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.edge_runtime.kube.manifests import MANAGED, NS, config_map, namespace
from tests.fake_kube import FakeKube

LABELS = {
    "a": {"tier": "web", "env": "prod"},
    "b": {"tier": "db", "env": "prod"},
    "c": {"tier": "cache"},
    "d": {},
}


@pytest.fixture
def core(fake_kube: FakeKube) -> client.CoreV1Api:
    fake_kube.seed(namespace(NS))
    for name, labels in LABELS.items():
        fake_kube.seed(config_map(name, labels, namespace=NS))
    return client.CoreV1Api(fake_kube.api_client())


def names(core: client.CoreV1Api, **selectors: str) -> list[str]:
    listed = core.list_namespaced_config_map(NS, **selectors).items
    return [cm.metadata.name for cm in listed if cm.metadata.name != "kube-root-ca.crt"]


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("tier=web", ["a"]),
        ("tier==web", ["a"]),
        ("tier!=web", ["b", "c", "d"]),  # != matches objects without the label too
        ("tier in (web,db)", ["a", "b"]),
        ("tier in ( web , cache )", ["a", "c"]),
        ("tier notin (web)", ["b", "c", "d"]),
        ("env", ["a", "b"]),
        ("!env", ["c", "d"]),
        ("env=prod,tier!=db", ["a"]),
        ("tier in (web,db),!env", []),
        ("env,tier notin (db,cache)", ["a"]),
        ("", ["a", "b", "c", "d"]),
    ],
)
def test_label_selectors(core: client.CoreV1Api, selector: str, expected: list[str]) -> None:
    assert names(core, label_selector=selector) == expected


@pytest.mark.parametrize(
    ("selector", "expected"),
    [("metadata.name=b", ["b"]), ("metadata.name!=b", ["a", "c", "d"]), ("metadata.name==zz", [])],
)
def test_field_selectors(core: client.CoreV1Api, selector: str, expected: list[str]) -> None:
    assert names(core, field_selector=selector) == expected


@pytest.mark.parametrize(
    ("selectors", "message"),
    [
        ({"label_selector": "tier in web"}, "unable to parse"),
        ({"label_selector": "tier in ()"}, "empty set"),
        ({"label_selector": "Bad Key=x"}, "unable to parse"),
        ({"field_selector": "data.k=v"}, "field label not supported: data.k"),
    ],
)
def test_bad_selectors_are_400(
    core: client.CoreV1Api, selectors: dict[str, str], message: str
) -> None:
    with pytest.raises(ApiException) as caught:
        core.list_namespaced_config_map(NS, **selectors)
    assert caught.value.status == 400 and message in str(caught.value.body)


def test_selected_list_leaves_other_namespaces_and_unlabelled_objects_alone(
    fake_kube: FakeKube,
) -> None:
    """What pruning will rely on: list ours by label in our namespace, delete only those."""
    for ns in (NS, "other"):
        fake_kube.seed(namespace(ns))
        for name, labels in (("ours", MANAGED), ("theirs", {"app": "x"}), ("bare", {})):
            fake_kube.seed(config_map(name, labels, namespace=ns))
    core = client.CoreV1Api(fake_kube.api_client())
    selector = "app.kubernetes.io/managed-by=tether"

    for cm in core.list_namespaced_config_map(NS, label_selector=selector).items:
        core.delete_namespaced_config_map(cm.metadata.name, NS)

    stored = fake_kube.objects("ConfigMap")
    left = {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in stored}
    assert (NS, "ours") not in left
    assert {(NS, "theirs"), (NS, "bare"), (NS, "kube-root-ca.crt")} <= left
    assert {("other", "ours"), ("other", "theirs"), ("other", "bare")} <= left
    everywhere = core.list_config_map_for_all_namespaces(label_selector=selector).items
    assert [(cm.metadata.namespace, cm.metadata.name) for cm in everywhere] == [("other", "ours")]
