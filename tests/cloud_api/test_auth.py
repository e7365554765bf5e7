"""Who may do what: bearer tokens and roles, activation, MQTT authentication (both DBs)."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlmodel import SQLModel

from cloud_api.runtime import Cloud
from tests.cloud_api.conftest import Clock, admin_token

NODES = "/v1/namespaces/default/nodes"
PROTECTED = [
    ("GET", "/v1/namespaces"),
    ("POST", "/v1/namespaces"),
    ("GET", "/v1/namespaces/default"),
    ("GET", NODES),
    ("POST", NODES),
    ("GET", f"{NODES}/n1"),
    ("DELETE", f"{NODES}/n1"),
    ("GET", f"{NODES}/n1/shadow"),
    ("PATCH", f"{NODES}/n1/shadow"),
    ("GET", f"{NODES}/n1/init"),
    ("POST", "/v1/broker/authenticate"),
    ("POST", "/v1/tokens"),
]


def everything_stored(cloud: Cloud) -> str:
    """Every row of every table, as text: to show a secret is not in the database."""
    rows: list[Any] = []
    with cloud.store.engine.connect() as connection:
        for table in SQLModel.metadata.sorted_tables:
            rows += connection.execute(text(f"SELECT * FROM {table.name}")).all()
    return repr(rows)


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_a_missing_or_wrong_bearer_token_is_401(
    cloud: Cloud, anonymous: httpx.Client, method: str, path: str
) -> None:
    cloud.create_node("n1")
    wrong = [None, "Bearer wrong", "Basic YWRtaW46YWRtaW4=", "Bearer", "Bearer " + "x" * 600]
    for authorization in wrong:
        headers = {"Authorization": authorization} if authorization else {}
        response = anonymous.request(method, path, headers=headers, content=b"{}")
        assert response.status_code == 401, authorization
        assert response.json()["code"] == 401 and response.headers["WWW-Authenticate"] == "Bearer"


def test_the_admin_token_is_a_0600_file_and_only_its_hash_is_stored(cloud: Cloud) -> None:
    path = Path(cloud.admin_token_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = admin_token(cloud)
    assert len(token) >= 43  # 256 bits, URL-safe base64
    stored = everything_stored(cloud)
    assert token not in stored
    assert hashlib.sha256(token.encode()).hexdigest() in stored


def _issue(api: httpx.Client, role: str, namespaces: list[str]) -> httpx.Client:
    response = api.post("/v1/tokens", json={"role": role, "namespaces": namespaces})
    assert response.status_code == 201
    issued = response.json()
    assert issued["role"] == role and issued["namespaces"] == sorted(namespaces)
    headers = {"Authorization": f"Bearer {issued['token']}"}
    return httpx.Client(base_url=str(api.base_url), headers=headers)


def test_roles_and_namespaces(cloud: Cloud, api: httpx.Client) -> None:
    cloud.create_node("n1")
    api.post("/v1/namespaces", json={"name": "other"})
    with _issue(api, "editor", ["default"]) as editor, _issue(api, "viewer", ["default"]) as viewer:
        assert [ns["name"] for ns in editor.get("/v1/namespaces").json()] == ["default"]
        patch = {"state": {"desired": {"a": 1}}}
        assert editor.patch(f"{NODES}/n1/shadow", json=patch).status_code == 200
        assert editor.get("/v1/namespaces/other/nodes").status_code == 403
        assert editor.post("/v1/namespaces", json={"name": "x"}).status_code == 403
        assert editor.post("/v1/tokens", json={"role": "admin"}).status_code == 403
        credentials = {"username": "u", "password": "p"}
        assert editor.post("/v1/broker/authenticate", json=credentials).status_code == 403
        assert viewer.get(f"{NODES}/n1/shadow").json()["version"] == 1
        assert viewer.patch(f"{NODES}/n1/shadow", json=patch).status_code == 403
        assert viewer.get(f"{NODES}/n1/init").status_code == 403
        assert viewer.delete(f"{NODES}/n1").status_code == 403


def test_activation(cloud: Cloud, api: httpx.Client, anonymous: httpx.Client) -> None:
    cloud.create_node("n1", mode="kube")  # type: ignore[arg-type]
    init = api.get(f"{NODES}/n1/init").json()
    token = init["token"]
    assert init["command"] == (
        f"kubectl apply -f '{cloud.settings.public_url}/v1/init/manifest.yaml?token={token}'"
    )
    native = api.get(f"{NODES}/n1/init", params={"mode": "native"}).json()
    assert native["command"].endswith("| sudo sh")
    assert init["expiresAt"] == int(cloud.context.clock()) + 3600
    assert token not in everything_stored(cloud)

    response = anonymous.post("/v1/activate", json={"token": token})
    assert response.status_code == 200
    granted = response.json()
    assert granted["namespace"] == "default" and granted["node"] == "n1"
    assert granted["mqtt"]["url"] == cloud.settings.mqtt_url
    assert granted["mqtt"]["username"] == "default/n1"
    password = granted["mqtt"]["password"]
    assert password not in everything_stored(cloud)
    assert cloud.authenticate_mqtt("default/n1", password)

    again = anonymous.post("/v1/activate", json={"token": token})
    assert again.status_code == 401 and "used or expired" in again.json()["message"]

    # re-activation with a new token replaces the password
    new_token = api.get(f"{NODES}/n1/init").json()["token"]
    second = anonymous.post("/v1/activate", json={"token": new_token}).json()
    assert cloud.authenticate_mqtt("default/n1", second["mqtt"]["password"])
    assert not cloud.authenticate_mqtt("default/n1", password)


@pytest.mark.parametrize("token", ["made-up", "", "x" * 256, "\x00"])
def test_an_unknown_activation_token_is_401(
    cloud: Cloud, anonymous: httpx.Client, token: str
) -> None:
    assert anonymous.post("/v1/activate", json={"token": token}).status_code == 401


def test_an_expired_activation_token_is_401(
    cloud: Cloud, clock: Clock, anonymous: httpx.Client
) -> None:
    cloud.create_node("n1")
    token = cloud.issue_activation("n1").token
    clock.now += 3600
    assert anonymous.post("/v1/activate", json={"token": token}).status_code == 401


def test_deleting_a_node_revokes_its_tokens_and_credentials(
    cloud: Cloud, api: httpx.Client
) -> None:
    cloud.create_node("n1")
    password = cloud.activate(cloud.issue_activation("n1").token).mqtt.password
    unused = cloud.issue_activation("n1").token
    assert api.delete(f"{NODES}/n1").status_code == 204
    assert not cloud.authenticate_mqtt("default/n1", password)
    assert api.post("/v1/activate", json={"token": unused}).status_code == 401


def test_broker_authentication(cloud: Cloud, api: httpx.Client) -> None:
    cloud.create_node("n1")
    password = cloud.activate(cloud.issue_activation("n1").token).mqtt.password
    bridge_secret = cloud.settings.bridge_secret_path.read_text().strip()
    allowed = [("default/n1", password), ("tether-cloud", bridge_secret)]
    refused = [
        ("default/n1", "wrong"),
        ("default/n2", password),
        ("tether-cloud", password),
        ("n1", password),
        ("", ""),
        ("default/n1/x", password),
        ("+/#", password),
        ("\x00/n1", "\x00"),
    ]

    def ask(username: str, secret: str) -> httpx.Response:
        return api.post("/v1/broker/authenticate", json={"username": username, "password": secret})

    for username, secret in allowed:
        response = ask(username, secret)
        assert (response.status_code, response.json()) == (200, {"allowed": True})
    for username, secret in refused:
        assert ask(username, secret).status_code == 401, username
    assert not cloud.authenticate_mqtt(None, None)
    assert not cloud.authenticate_mqtt("default/n1", None)
