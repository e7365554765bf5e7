"""The REST API over HTTP, on both databases: namespaces, nodes, shadows, health, metrics."""

from __future__ import annotations

import httpx
import pytest

from cloud_api.mqtt.transport import MemoryPublisher
from cloud_api.runtime import Cloud
from cloud_api.store.engine import create_store_engine
from schemas.topics import Suffix
from tests.conftest import free_port

NODES = "/v1/namespaces/default/nodes"


def test_namespaces(api: httpx.Client) -> None:
    assert [ns["name"] for ns in api.get("/v1/namespaces").json()] == ["default"]
    created = api.post("/v1/namespaces", json={"name": "factory-7"})
    assert created.status_code == 201 and created.json()["name"] == "factory-7"
    assert api.post("/v1/namespaces", json={"name": "factory-7"}).status_code == 409
    assert api.get("/v1/namespaces/factory-7").status_code == 200
    assert api.get("/v1/namespaces/nowhere").status_code == 404
    assert [ns["name"] for ns in api.get("/v1/namespaces").json()] == ["default", "factory-7"]


def test_node_lifecycle(api: httpx.Client) -> None:
    labels = {"site": "lyon", "tether.io/tier": "gw"}
    body = {"name": "edge-1", "labels": labels, "description": "gw", "mode": "kube"}
    created = api.post(NODES, json=body)
    assert created.status_code == 201
    assert created.json() == {
        **body,
        "namespace": "default",
        "online": False,
        "lastSeen": None,
        "createdAt": created.json()["createdAt"],
    }
    assert api.post(NODES, json={"name": "edge-1"}).status_code == 409
    assert [n["name"] for n in api.get(NODES).json()] == ["edge-1"]
    assert api.get(f"{NODES}/edge-1").json() == created.json()
    assert api.get(f"{NODES}/edge-1/shadow").json()["version"] == 0
    assert api.delete(f"{NODES}/edge-1").status_code == 204
    assert api.get(f"{NODES}/edge-1").status_code == 404
    assert api.get(f"{NODES}/edge-1/shadow").status_code == 404
    assert api.delete(f"{NODES}/edge-1").status_code == 404
    assert api.post("/v1/namespaces/nowhere/nodes", json={"name": "x"}).status_code == 404


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"name": "Edge_1"}, "invalid node name 'Edge_1'"),
        ({"name": "a" * 64}, "invalid node name"),
        ({"name": ""}, "invalid node name"),
        ({"name": "ok", "labels": {"bad key!": "v"}}, "label key 'bad key!'"),
        ({"name": "ok", "labels": {"k": "-v"}}, "label value '-v'"),
        ({"name": "ok", "mode": "docker"}, "body.mode"),
        ({"name": "ok", "colour": "red"}, "body.colour"),
        ({}, "body.name: Field required"),
        ({"name": "ok", "description": "a\x00b"}, "body.description: Value error, must not"),
    ],
)
def test_node_creation_is_validated_with_400(
    api: httpx.Client, body: dict[str, object], fragment: str
) -> None:
    response = api.post(NODES, json=body)
    assert response.status_code == 400
    assert response.json()["code"] == 400 and fragment in response.json()["message"]


def test_shadow_patch_returns_the_document_and_publishes_like_mqtt(
    cloud: Cloud, api: httpx.Client
) -> None:
    cloud.create_node("n1")
    published = cloud.context.publisher = MemoryPublisher()
    patch = {"state": {"desired": {"fan": "on"}}, "clientToken": "c1"}
    response = api.patch(f"{NODES}/n1/shadow", json=patch)
    assert response.status_code == 200
    document = response.json()
    desired = {"apps": {}, "fan": "on"}  # a new node desires no apps, explicitly
    assert document["state"] == {"desired": desired, "reported": {}, "delta": {"fan": "on"}}
    assert document["version"] == 1
    topic = cloud.settings.topics.topic
    assert [m.topic for m in published.messages] == [
        topic("default", "n1", Suffix.SHADOW_UPDATE_ACCEPTED),
        topic("default", "n1", Suffix.SHADOW_UPDATE_DELTA),
        topic("default", "n1", Suffix.SHADOW_UPDATE_DOCUMENTS),
    ]
    assert published.messages[0].json()["clientToken"] == "c1"
    delta = {"state": {"fan": "on"}, "version": 1, "timestamp": document["timestamp"]}
    assert published.messages[1].json() == delta
    assert api.get(f"{NODES}/n1/shadow").json() == document


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"state": {"reported": {"a": 1}}}, 403),
        ({"state": {"desired": {"a": 1}}, "version": 5}, 409),
        ({"state": {"desired": {"blob": "x" * 300_000}}}, 413),
        ({"state": {"desired": {"a": [None]}}}, 400),
    ],
)
def test_shadow_patch_rejections(
    cloud: Cloud, api: httpx.Client, body: dict[str, object], code: int
) -> None:
    cloud.create_node("n1")
    response = api.patch(f"{NODES}/n1/shadow", json=body)
    assert response.status_code == code and response.json()["code"] == code
    assert api.get(f"{NODES}/n1/shadow").json()["version"] == 0


def test_deleting_a_node_clears_its_retained_status(cloud: Cloud, api: httpx.Client) -> None:
    cloud.create_node("n1")
    published = cloud.context.publisher = MemoryPublisher()
    assert api.delete(f"{NODES}/n1").status_code == 204
    (cleared,) = published.messages
    assert (cleared.topic, cleared.payload, cleared.retain) == (
        cloud.settings.topics.topic("default", "n1", Suffix.STATUS), b"", True
    )


def test_unknown_routes_and_methods_keep_the_error_shape(api: httpx.Client) -> None:
    assert api.get("/v1/nothing").json() == {"code": 404, "message": "Not Found"}
    assert api.put("/v1/namespaces").json()["code"] == 405


def test_healthz_and_metrics_need_no_token(
    cloud: Cloud, anonymous: httpx.Client, api: httpx.Client
) -> None:
    assert anonymous.get("/healthz").json() == {"status": "ok", "database": "ok", "bridge": "off"}
    cloud.create_node("n1")
    api.patch(f"{NODES}/n1/shadow", json={"state": {"desired": {"a": 1}}})
    api.patch(f"{NODES}/n1/shadow", json={"state": {"desired": {"a": 1}}, "version": 0})
    text = anonymous.get("/metrics").text
    assert 'tether_shadow_updates_accepted_total{source="rest"} 1' in text
    assert 'tether_shadow_updates_rejected_total{code="409",source="rest"} 1' in text
    assert "tether_nodes_online 0" in text
    assert "# TYPE tether_bridge_messages_total counter" in text


def test_a_database_that_does_not_answer_is_503_on_healthz_and_retryable_elsewhere(
    cloud: Cloud, api: httpx.Client, anonymous: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    unreachable = create_store_engine(f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none")
    monkeypatch.setattr(cloud.store, "engine", unreachable)
    health = anonymous.get("/healthz")
    assert health.status_code == 503 and health.json()["status"] == "unavailable"
    response = api.get(NODES)
    assert response.status_code == 503 and response.headers["Retry-After"] == "2"
    assert response.json() == {"code": 503, "message": "the database is unavailable; retry shortly"}
    unreachable.dispose()
