"""The brokers' webhooks at the HTTP level: RabbitMQ's ``rabbitmq_auth_backend_http`` and
EMQX's HTTP authenticator/authorizer, asked as those brokers ask.

The RabbitMQ requests are the form bodies RabbitMQ 3.10.8 sent (recorded from the
conformance suite's private RabbitMQ); the EMQX ones are the JSON bodies EMQX 5 builds
from the templates its docs give (``{"username": "${username}", "password":
"${password}"}`` for authentication, ``{"username": "${username}", "topic": "${topic}",
"action": "${action}"}`` for authorization, plus ``clientid`` and ``cert_common_name``),
with the placeholders filled in as EMQX fills them."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from urllib.parse import urlencode

import httpx
import pytest

from cloud_api.runtime import Cloud
from cloud_api.security.broker_webhooks import mqtt_topic_of
from cloud_api.settings import CloudSettings
from edge_runtime.activation import new_key_and_csr
from tests.cloud_api.conftest import admin_token

RABBIT = "/v1/broker/rabbitmq"
EMQX = "/v1/broker/emqx"


@pytest.fixture
def cloud(make_settings: Callable[..., CloudSettings]) -> Iterator[Cloud]:
    """A cloud that signs CSRs (it advertises a TLS broker); real time, for expiry."""
    with Cloud(make_settings(advertised_mqtts_url="mqtts://127.0.0.1:8883")) as opened:
        yield opened


def password_node(cloud: Cloud, node: str) -> str:
    cloud.create_node(node)
    answer = cloud.activate(cloud.issue_activation(node).token)
    assert answer.mqtt.password is not None
    return answer.mqtt.password


def rabbit(api: httpx.Client, check: str, **params: str) -> str:
    """POST as RabbitMQ does (form-encoded); the body it gets back."""
    response = api.post(f"{RABBIT}/{check}", content=urlencode(params),
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200, response.text
    return response.text


def topic_params(node: str, permission: str, routing_key: str) -> dict[str, str]:
    """A topic check as RabbitMQ 3.10.8 sent it for client ``tether-edge.default.NODE``."""
    return {"username": f"default/{node}", "vhost": "/", "resource": "topic", "name": "amq.topic",
            "permission": permission, "tags": "", "routing_key": routing_key,
            "variable_map.client_id": f"tether-edge.default.{node}",
            "variable_map.username": f"default/{node}", "variable_map.vhost": "/"}


@pytest.mark.parametrize(("routing_key", "topic"), [
    ("tether.v1.default.n1.shadow.get", "tether/v1/default/n1/shadow/get"),
    ("tether.v1.default.n1.shadow.update.*", "tether/v1/default/n1/shadow/update/+"),
    ("tether.v1.default.n1.#", "tether/v1/default/n1/#"),
    ("a/b.c", "a.b/c"),  # an MQTT '.' travels as '/'
])
def test_routing_keys_map_back_to_mqtt_topics(routing_key: str, topic: str) -> None:
    assert mqtt_topic_of(routing_key) == topic


def test_rabbitmq_a_node_logs_in_with_its_own_password_and_client_id(
    cloud: Cloud, api: httpx.Client
) -> None:
    password = password_node(cloud, "r1")
    login = {"username": "default/r1", "password": password, "vhost": "/",
             "client_id": "tether-edge.default.r1"}
    assert rabbit(api, "user", **login) == "allow"
    assert rabbit(api, "user", **{**login, "password": "wrong"}) == "deny"
    assert rabbit(api, "user", **{**login, "client_id": "tether-edge.default.r2"}) == "deny"
    assert rabbit(api, "user", **{**login, "username": "default/nobody"}) == "deny"
    bridge = {"username": cloud.settings.mqtt_username, "password": cloud.bridge_password}
    assert rabbit(api, "user", **bridge, client_id="tether-edge.default.r1") == "allow"  # a kick
    assert rabbit(api, "vhost", username="default/r1", vhost="/", ip="127.0.0.1", tags="",
                  client_id="tether-edge.default.r1") == "allow"
    cloud.revoke_node("r1")
    assert rabbit(api, "user", **login) == "deny"


def test_rabbitmq_a_node_gets_its_own_queues_and_topics_only(
    cloud: Cloud, api: httpx.Client
) -> None:
    base = {"username": "default/r3", "vhost": "/", "tags": "",
            "client_id": "tether-edge.default.r3"}
    own_queue = "mqtt-subscription-tether-edge.default.r3qos1"
    for permission in ("configure", "read", "write"):
        assert rabbit(api, "resource", **base, resource="queue", name=own_queue,
                      permission=permission) == "allow"
    assert rabbit(api, "resource", **base, resource="queue", permission="read",
                  name="mqtt-subscription-tether-edge.default.r4qos1") == "deny"
    assert rabbit(api, "resource", **base, resource="exchange", name="amq.topic",
                  permission="write") == "allow"
    assert rabbit(api, "resource", **base, resource="exchange", name="amq.topic",
                  permission="configure") == "deny"
    allowed = [("read", "tether.v1.default.r3.shadow.get.*"),
               ("write", "tether.v1.default.r3.status"),
               ("write", "tether.v1.default.r3.shadow.update")]
    denied = [("read", "tether.v1.default.other.#"),
              ("read", "tether.v1.#"),
              ("write", "tether.v1.default.other.shadow.update"),
              ("write", "tether.v1.default.r3.shadow.update.accepted")]  # the cloud's to send
    for permission, key in allowed:
        assert rabbit(api, "topic", **topic_params("r3", permission, key)) == "allow", key
    for permission, key in denied:
        assert rabbit(api, "topic", **topic_params("r3", permission, key)) == "deny", key


def test_rabbitmq_get_and_basic_auth_as_configured_in_a_url(
    cloud: Cloud, api: httpx.Client, anonymous: httpx.Client
) -> None:
    """``auth_http.http_method = get`` sends query parameters; a token in the URL's
    userinfo arrives as basic auth; without a token nothing is answered."""
    password = password_node(cloud, "r5")
    query = {"username": "default/r5", "password": password}
    basic = base64.b64encode(f"tether:{admin_token(cloud)}".encode()).decode()
    answer = anonymous.get(f"{RABBIT}/user", params=query,
                           headers={"Authorization": f"Basic {basic}"})
    assert (answer.status_code, answer.text) == (200, "allow")
    assert anonymous.get(f"{RABBIT}/user", params=query).status_code == 401
    wrong = base64.b64encode(b"tether:not-a-token").decode()
    assert anonymous.get(f"{RABBIT}/user", params=query,
                         headers={"Authorization": f"Basic {wrong}"}).status_code == 401


def test_emqx_authentication_by_password_and_by_certificate(
    cloud: Cloud, api: httpx.Client
) -> None:
    password = password_node(cloud, "e1")
    ask = {"username": "default/e1", "password": password, "clientid": "tether-edge.default.e1"}
    assert api.post(f"{EMQX}/authenticate", json=ask).json() == {
        "result": "allow", "is_superuser": False}
    assert api.post(f"{EMQX}/authenticate", json={**ask, "password": "x"}).json()["result"] == "deny"
    assert api.post(f"{EMQX}/authenticate",
                    json={**ask, "clientid": "tether-edge.default.e2"}).json()["result"] == "deny"
    # A certificate node: EMQX fills ${cert_common_name}; ${password} of a client that sent
    # none is the empty string (or "undefined" in some versions).
    cloud.create_node("e3")
    _, csr = new_key_and_csr("default/e3")
    assert cloud.activate(cloud.issue_activation("e3").token, csr=csr).certificate is not None
    cert = {"username": "", "password": "", "clientid": "tether-edge.default.e3",
            "cert_common_name": "default/e3"}
    assert api.post(f"{EMQX}/authenticate", json=cert).json()["result"] == "allow"
    assert api.post(f"{EMQX}/authenticate",
                    json={**cert, "password": "undefined"}).json()["result"] == "allow"
    assert api.post(f"{EMQX}/authenticate",
                    json={**cert, "username": "default/e1"}).json()["result"] == "deny"
    assert api.post(f"{EMQX}/authenticate",
                    json={**cert, "cert_common_name": ""}).json()["result"] == "deny"
    cloud.revoke_node("e3")
    assert api.post(f"{EMQX}/authenticate", json=cert).json()["result"] == "deny"
    for garbage in (b"", b"[]", b"{", b'{"username": 3}'):
        answer = api.post(f"{EMQX}/authenticate", content=garbage)
        assert (answer.status_code, answer.json()["result"]) == (200, "deny")


def test_emqx_authorization_confines_a_node_to_its_topics(cloud: Cloud, api: httpx.Client) -> None:
    def ask(username: str, action: str, topic: str) -> str:
        body = {"username": username, "clientid": "c", "action": action, "topic": topic}
        result: str = api.post(f"{EMQX}/authorize", json=body).json()["result"]
        return result

    node = "default/e4"
    assert ask(node, "subscribe", "tether/v1/default/e4/shadow/get/+") == "allow"
    assert ask(node, "publish", "tether/v1/default/e4/shadow/update") == "allow"
    assert ask(node, "subscribe", "tether/v1/default/e5/#") == "deny"
    assert ask(node, "publish", "tether/v1/default/e5/shadow/update") == "deny"
    assert ask(node, "subscribe", "$share/tether-cloud/tether/v1/+/+/shadow/get") == "deny"
    assert ask(node, "all", "tether/v1/default/e4/shadow/update") == "allow"
    assert ask(node, "all", "tether/v1/default/e4/shadow/update/accepted") == "deny"  # the cloud's
    bridge = cloud.settings.mqtt_username
    assert ask(bridge, "subscribe", "$share/tether-cloud/tether/v1/+/+/shadow/get") == "allow"
    assert ask(bridge, "publish", "tether/v1/default/e4/shadow/update/delta") == "allow"


def test_only_an_admin_token_gets_answers(cloud: Cloud, anonymous: httpx.Client) -> None:
    assert anonymous.post(f"{EMQX}/authenticate", json={"username": "x"}).status_code == 401
    assert anonymous.post(f"{EMQX}/authorize", json={"username": "x"}).status_code == 401
    assert anonymous.post(f"{RABBIT}/topic").status_code == 401
