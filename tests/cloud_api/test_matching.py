"""Matching over REST: labels and selectors decide each node's desired apps, and a config
change reaches exactly the nodes that run an app mounting it, as a delta."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from cloud_api.mqtt.transport import MemoryPublisher
from cloud_api.runtime import Cloud
from schemas.topics import Suffix

NS = "/v1/namespaces/default"


def app_body(name: str, selector: str, *, config: str | None = None) -> dict[str, Any]:
    service: dict[str, Any] = {"name": "main", "image": "nginx:1"}
    body: dict[str, Any] = {"name": name, "selector": selector, "services": [service]}
    if config:
        service["volumeMounts"] = [{"name": "conf", "mountPath": "/etc/conf"}]
        body["volumes"] = [{"name": "conf", "config": {"name": config}}]
    return body


def settle(cloud: Cloud) -> None:
    """Wait for the background matcher to do what the writes so far owe."""
    assert cloud.rematcher.wait_idle(10)


def desired_apps(api: httpx.Client, node: str) -> Any:
    return api.get(f"{NS}/nodes/{node}/shadow").json()["state"]["desired"]["apps"]


@pytest.fixture
def published(cloud: Cloud) -> MemoryPublisher:
    cloud.context.publisher = memory = MemoryPublisher()
    return memory


def test_labels_and_selectors_decide_desired_apps(
    cloud: Cloud, api: httpx.Client, published: MemoryPublisher
) -> None:
    for name, labels in [("n1", {"env": "prod", "gpu": "yes"}), ("n2", {"env": "prod"}),
                         ("n3", {"env": "dev"})]:
        assert api.post(f"{NS}/nodes", json={"name": name, "labels": labels}).status_code == 201
    assert api.post(f"{NS}/configs", json={"name": "web-conf", "data": {"a": "1"}}).status_code == 201
    web = api.post(f"{NS}/apps", json=app_body("web", "env=prod", config="web-conf"))
    assert web.status_code == 201, web.text
    assert web.json()["volumes"][0]["config"] == {"name": "web-conf", "version": "1"}
    assert web.json()["affectedNodes"] == 2  # n1 and n2 (env=prod)
    settle(cloud)
    ml = api.post(f"{NS}/apps", json=app_body("ml", "gpu,env in (prod,dev)"))
    assert ml.status_code == 201 and ml.json()["affectedNodes"] == 1  # n1 (n2: no gpu label)
    settle(cloud)

    assert {n: desired_apps(api, n) for n in ("n1", "n2", "n3")} == {
        "n1": {"ml": "1", "web": "1"}, "n2": {"web": "1"}, "n3": {}}

    # a label change moves apps: n3 gains both, n1 loses ml
    published.clear()
    patched = api.patch(f"{NS}/nodes/n3", json={"labels": {"env": "prod", "gpu": "1"}})
    assert patched.status_code == 200, patched.text
    assert api.patch(f"{NS}/nodes/n1", json={"labels": {"env": "prod"}}).status_code == 200
    settle(cloud)
    assert desired_apps(api, "n3") == {"ml": "1", "web": "1"}
    assert desired_apps(api, "n1") == {"web": "1"}
    topics = cloud.settings.topics
    (n1_delta,) = published.on(topics.topic("default", "n1", Suffix.SHADOW_UPDATE_DELTA))
    assert "ml" not in n1_delta["state"].get("apps", {})  # never reported: nothing to remove

    # the config changes: web gets version 2 on exactly n1, n2, n3 (all prod now), not ml
    api.put(f"{NS}/nodes/n2", json={"labels": {"env": "dev"}})  # n2 leaves web
    settle(cloud)
    published.clear()
    changed = api.put(f"{NS}/configs/web-conf", json={"data": {"a": "2"}})
    assert changed.status_code == 200 and changed.json()["version"] == "2"
    assert changed.json()["affectedNodes"] == 2  # n1 and n3 run web, which mounts it
    settle(cloud)
    web2 = api.get(f"{NS}/apps/web").json()
    assert web2["version"] == "2" and web2["volumes"][0]["config"]["version"] == "2"
    assert desired_apps(api, "n1") == {"web": "2"}
    assert desired_apps(api, "n3") == {"ml": "1", "web": "2"}
    assert desired_apps(api, "n2") == {}
    for node in ("n1", "n3"):
        (delta,) = published.on(topics.topic("default", node, Suffix.SHADOW_UPDATE_DELTA))
        assert delta["state"]["apps"]["web"] == "2"
    assert published.on(topics.topic("default", "n2", Suffix.SHADOW_UPDATE_DELTA)) == []

    # the same content again makes no new version and no message
    published.clear()
    assert api.put(f"{NS}/configs/web-conf", json={"data": {"a": "2"}}).json()["version"] == "2"
    settle(cloud)
    assert published.messages == []

    # rollout status, with n1 reporting web 2 running
    cloud.context.publisher = MemoryPublisher()
    with cloud.store.session() as session:
        from cloud_api.services.shadows import update_shadow

        report = {"apps": {"web": "2"}, "appstats": {"web": {"status": "Running"}}}
        update_shadow(session, "default", "n1", {"state": {"reported": report}},
                      writable=("reported",), now=1)
    rollout = api.get(f"{NS}/apps/web/nodes").json()
    assert rollout["counts"] == {"matched": 2, "updated": 1, "running": 1, "failed": 0,
                                 "offline": 2}
    assert [n["node"] for n in rollout["nodes"]] == ["n1", "n3"]

    # deleting a mounted config is refused, naming the app; deleting the app unmatches it
    refused = api.delete(f"{NS}/configs/web-conf")
    assert refused.status_code == 409 and "web" in refused.json()["message"]
    assert api.delete(f"{NS}/apps/web").status_code == 204
    settle(cloud)
    assert desired_apps(api, "n1") == {}
    assert api.delete(f"{NS}/configs/web-conf").status_code == 204


def test_a_new_node_starts_with_the_apps_matched_to_it(api: httpx.Client) -> None:
    assert api.post(f"{NS}/apps", json=app_body("web", "env=prod")).status_code == 201
    api.post(f"{NS}/nodes", json={"name": "late", "labels": {"env": "prod"}})
    shadow = api.get(f"{NS}/nodes/late/shadow").json()
    assert shadow["version"] == 0 and shadow["state"]["desired"] == {"apps": {"web": "1"}}


@pytest.mark.parametrize(
    ("path", "body", "needle"),
    [
        ("apps", app_body("web", "env in (a"), "selector"),
        ("apps", app_body("Web", ""), "invalid"),
        ("apps", app_body("web", "", config="nope"), "config default/nope"),
        ("configs", {"name": "a/b", "data": {}}, "invalid"),
        ("configs", {"name": "c", "data": {}, "labels": {"-x": "y"}}, "label key"),
        ("certificates", {"name": "c", "certificate": "junk", "privateKey": "junk"}, "PEM"),
        ("secrets", {"name": "s", "data": {"k": "v"}, "extra": 1}, "extra"),
    ],
)
def test_bad_bodies_are_4xx_with_a_message(
    api: httpx.Client, path: str, body: dict[str, Any], needle: str
) -> None:
    response = api.post(f"{NS}/{path}", json=body)
    assert 400 <= response.status_code < 500
    assert needle.lower() in response.json()["message"].lower()


def test_oversized_bodies_are_413(cloud: Cloud, api: httpx.Client) -> None:
    big = "x" * (cloud.settings.limits.max_payload_bytes + 1)
    response = api.post(f"{NS}/configs", json={"name": "big", "data": {"k": big}})
    assert response.status_code == 413 and "limit" in response.json()["message"]


def test_invalid_node_labels_are_400(api: httpx.Client) -> None:
    api.post(f"{NS}/nodes", json={"name": "n1"})
    response = api.patch(f"{NS}/nodes/n1", json={"labels": {"env": "bad value"}})
    assert response.status_code == 400 and "label value" in response.json()["message"]


def test_rollout_status_reads_what_each_node_reports_of_the_app(
    cloud: Cloud, api: httpx.Client
) -> None:
    from cloud_api.services.shadows import update_shadow

    assert api.post(f"{NS}/apps", json=app_body("web", "env=prod")).status_code == 201
    for node in ("a", "b", "c", "d"):
        api.post(f"{NS}/nodes", json={"name": node, "labels": {"env": "prod"}})
    settle(cloud)
    instances = [{"name": "main-0", "restarts": 1}, {"name": "main-1", "restarts": 2},
                 {"name": "main-2", "restarts": "x"}]
    reports = {
        "a": {"apps": {"web": "1"}, "appstats": {"web": {"status": "Running", "instances": instances}}},
        "b": {"apps": {"web": "1"}, "appstats": {"web": {"status": "Failed", "cause": "image pull"}}},
        "c": {"apps": {"web": "1"}, "appstats": {"web": "not an object"}},
        "d": {"appstats": {"web": {"status": 5, "cause": {"code": 1}}}},
    }
    with cloud.store.session() as session:
        for node, report in reports.items():
            update_shadow(session, "default", node, {"state": {"reported": report}},
                          writable=("reported",), now=1)
    rollout = api.get(f"{NS}/apps/web/nodes").json()
    by_node = {n["node"]: (n["reportedVersion"], n["status"], n["cause"], n["restarts"])
               for n in rollout["nodes"]}
    assert by_node == {
        "a": ("1", "Running", None, 3),
        "b": ("1", "Failed", "image pull", 0),
        "c": ("1", None, None, 0),
        "d": (None, "5", '{"code":1}', 0),
    }
    assert rollout["counts"] == {"matched": 4, "updated": 3, "running": 1, "failed": 1,
                                 "offline": 4}
