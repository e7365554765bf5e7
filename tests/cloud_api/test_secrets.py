"""Secrets: sealed at rest, never returned over REST, opened only for matched nodes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import inspect, text

from cloud_api.metrics import Metrics
from cloud_api.mqtt.serving import ShadowServer
from cloud_api.mqtt.transport import MemoryPublisher
from cloud_api.runtime import Cloud
from cloud_api.services.node_certificates import record_certificate
from cloud_api.services.secrets_crypto import SecretBox
from edge_runtime.activation import new_key_and_csr
from schemas.topics import Suffix

NS = "/v1/namespaces/default"
PLAIN = "hunter2-very-secret-value"
REG_PASSWORD = "registry-pass-0451"


def seed(api: httpx.Client) -> None:
    api.post(f"{NS}/nodes", json={"name": "n1", "labels": {"env": "prod"}})
    api.post(f"{NS}/nodes", json={"name": "n2", "labels": {"env": "dev"}})
    assert api.post(f"{NS}/secrets", json={"name": "db", "data": {"password": PLAIN}}).status_code == 201
    assert api.post(f"{NS}/secrets", json={"name": "other", "data": {"k": "v"}}).status_code == 201
    registry = {"name": "hub", "address": "registry.example.com", "username": "u",
                "password": REG_PASSWORD}
    assert api.post(f"{NS}/registries", json=registry).status_code == 201
    generate = {"name": "tls", "generate": {"commonName": "edge.local", "sans": ["edge.local"]}}
    cert = api.post(f"{NS}/certificates", json=generate)
    assert cert.status_code == 201, cert.text
    assert cert.json()["commonName"] == "edge.local" and "privateKey" not in cert.json()
    app = {
        "name": "web", "selector": "env=prod", "registries": [{"name": "hub"}],
        "services": [{"name": "main", "image": "nginx", "volumeMounts": [
            {"name": "s", "mountPath": "/s"}, {"name": "t", "mountPath": "/t"}]}],
        "volumes": [{"name": "s", "secret": {"name": "db"}},
                    {"name": "t", "certificate": {"name": "tls"}}],
    }
    response = api.post(f"{NS}/apps", json=app)
    assert response.status_code == 201, response.text


def test_secret_values_never_leave_over_rest(api: httpx.Client) -> None:
    seed(api)
    everything = [api.get(f"{NS}/secrets"), api.get(f"{NS}/secrets/db"),
                  api.get(f"{NS}/registries"), api.get(f"{NS}/registries/hub"),
                  api.get(f"{NS}/certificates/tls")]
    assert api.get(f"{NS}/secrets/db").json()["keys"] == ["password"]
    for response in everything:
        assert response.status_code == 200
        assert PLAIN not in response.text and REG_PASSWORD not in response.text
        assert "PRIVATE KEY" not in response.text


def test_no_plaintext_in_the_database(cloud: Cloud, api: httpx.Client) -> None:
    seed(api)
    api.put(f"{NS}/secrets/db", json={"data": {"password": PLAIN + "-2"}})  # a second version
    needles = [PLAIN.encode(), REG_PASSWORD.encode(), b"PRIVATE KEY"]
    if cloud.store.is_sqlite:
        cloud.store.close()  # checkpoint the WAL into the file, then read every byte
        database = Path(cloud.store.engine.url.database or "")
        for path in database.parent.glob(database.name + "*"):
            raw = path.read_bytes()
            assert not any(needle in raw for needle in needles), path
        return
    with cloud.store.engine.connect() as connection:
        for table in inspect(connection).get_table_names():
            for row in connection.execute(text(f'SELECT * FROM "{table}"')):
                dumped = json.dumps([str(value) for value in row]).encode()
                assert not any(needle in dumped for needle in needles), table


def server(cloud: Cloud) -> tuple[ShadowServer, MemoryPublisher]:
    publisher = MemoryPublisher()
    return ShadowServer(
        cloud.store, publisher, topics=cloud.settings.topics, limits=cloud.settings.limits,
        metrics=Metrics(), clock=cloud.context.clock,
        secrets=SecretBox.from_settings(cloud.settings),
    ), publisher


def ask(cloud: Cloud, node: str, items: list[dict[str, str]]) -> tuple[str, Any]:
    assert cloud.rematcher.wait_idle(10)  # the matching the writes so far owe is done
    shadow_server, publisher = server(cloud)
    topics = cloud.settings.topics
    body = {"clientToken": "ct", "items": items}
    shadow_server.handle(topics.topic("default", node, Suffix.RESOURCES_GET), json.dumps(body).encode())
    (message,) = publisher.messages
    return message.topic.rsplit("/", 1)[1], message.json()


def test_resources_get_serves_matched_nodes_only(cloud: Cloud, api: httpx.Client) -> None:
    seed(api)
    web = {"kind": "app", "name": "web", "version": "1"}
    secret = {"kind": "secret", "name": "db", "version": "1"}
    kind, reply = ask(cloud, "n1", [web, secret, {"kind": "registry", "name": "hub", "version": "1"},
                                    {"kind": "certificate", "name": "tls", "version": "1"}])
    assert kind == "accepted" and reply["clientToken"] == "ct"
    app, db, hub, tls = (item["value"] for item in reply["items"])
    assert app["volumes"][0]["secret"] == {"name": "db", "version": "1"}
    assert db == {"name": "db", "data": {"password": PLAIN}}
    assert hub["password"] == REG_PASSWORD and "PRIVATE KEY" in tls["privateKey"]

    for node, items, code in [
        ("n2", [web], 403),  # not matched
        ("n2", [secret], 403),
        ("n1", [{"kind": "secret", "name": "other", "version": "1"}], 403),  # not pinned
        ("n1", [{"kind": "app", "name": "web", "version": "9"}], 404),
        ("n1", [{"kind": "config", "name": "ghost", "version": "1"}], 404),
        ("n1", [{"kind": "nope", "name": "web", "version": "1"}], 400),
        ("n1", [], 400),
    ]:
        kind, reply = ask(cloud, node, items)
        assert (kind, reply["code"], reply["clientToken"]) == ("rejected", code, "ct"), items


def test_the_previous_app_version_stays_fetchable(cloud: Cloud, api: httpx.Client) -> None:
    seed(api)
    api.put(f"{NS}/secrets/db", json={"data": {"password": "new"}})  # web -> 2
    kind, reply = ask(cloud, "n1", [{"kind": "app", "name": "web", "version": "1"},
                                    {"kind": "secret", "name": "db", "version": "1"}])
    assert kind == "accepted" and reply["items"][1]["value"]["data"]["password"] == PLAIN


def test_the_key_file_is_private(cloud: Cloud) -> None:
    assert (cloud.settings.data_dir / "secret.key").stat().st_mode & 0o777 == 0o600


def test_a_revoked_node_still_connected_gets_nothing_and_is_cut_off_again(
    cloud: Cloud, api: httpx.Client
) -> None:
    """On a broker that cannot ask the cloud (Mosquitto before its CRL lists the node), a
    revoked node may be connected: it is refused resources, and its presence is reported
    so it is cut off again (cloud_api.mqtt.kicking)."""
    seed(api)
    _, csr = new_key_and_csr("default/n1")
    signed = cloud.authority.sign_csr(csr, common_name="default/n1", days=30)
    with cloud.store.session() as session:  # what activating with a CSR records
        record_certificate(session, "default", "n1", signed, now=cloud.context.now())
        session.commit()
    web = {"kind": "app", "name": "web", "version": "1"}
    assert ask(cloud, "n1", [web])[0] == "accepted"  # certified and not revoked: served
    cloud.revoke_node("n1")
    told: list[str] = []
    publisher = MemoryPublisher()
    shadow_server = ShadowServer(
        cloud.store, publisher, topics=cloud.settings.topics, limits=cloud.settings.limits,
        metrics=Metrics(), clock=cloud.context.clock,
        secrets=SecretBox.from_settings(cloud.settings), cut_off=told.append,
    )
    topics = cloud.settings.topics
    request = json.dumps({"clientToken": "ct", "items": [web]}).encode()
    shadow_server.handle(topics.topic("default", "n1", Suffix.RESOURCES_GET), request)
    (message,) = publisher.messages
    assert message.topic.endswith("/rejected") and message.json()["code"] == 403
    shadow_server.handle(topics.topic("default", "n1", Suffix.STATUS), b'{"online": true}')
    assert told == ["default/n1", "default/n1"]
    assert api.get(f"{NS}/nodes/n1").json()["online"] is False
    assert ask(cloud, "n2", [web])[0] == "rejected"  # n2 is unmatched, but never cut off
    assert told == ["default/n1", "default/n1"]
