"""A device maker's node: plain paho and the topic contract alone, activated by password.

Nothing of Tether's edge runtime is used here: REST to create the node and get a token,
``POST /v1/activate`` for credentials, then raw MQTT on the documented topics.
"""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import pytest

from launcher.stack import LocalStack
from tests.e2e.conftest import Api
from tests.paho_clients import release_sockets


@dataclass
class Credentials:
    namespace: str
    node: str
    host: str
    port: int
    username: str
    password: str


def activate_node(api: Api, name: str) -> Credentials:
    api.client.post("/v1/namespaces/default/nodes", json={"name": name}).raise_for_status()
    init = api.client.get(f"/v1/namespaces/default/nodes/{name}/init", params={"mode": "native"})
    init.raise_for_status()
    assert {"command", "token", "expiresAt"} <= set(init.json())
    token = init.json()["token"]
    response = api.client.post("/v1/activate", json={"token": token}, headers={"Authorization": ""})
    response.raise_for_status()
    body = response.json()
    assert body["namespace"] == "default" and body["node"] == name
    assert body["mqtt"]["username"] == f"default/{name}"
    # the token is single use
    assert api.client.post("/v1/activate", json={"token": token}).status_code == 401
    url = urlsplit(body["mqtt"]["url"])
    return Credentials("default", name, url.hostname or "", url.port or 1883, body["mqtt"]["username"], body["mqtt"]["password"])


class Device:
    """A raw MQTT node: subscribes to its root, publishes requests, collects replies."""

    def __init__(self, creds: Credentials, root: str) -> None:
        self.root = f"{root}/{creds.namespace}/{creds.node}"
        self.inbox: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"device-{uuid.uuid4().hex[:6]}")
        self.client.username_pw_set(creds.username, creds.password)
        self.client.on_message = lambda c, u, m: self.inbox.put((m.topic[len(self.root) + 1:], json.loads(m.payload)))
        subscribed: queue.Queue[bool] = queue.Queue()
        self.client.on_subscribe = lambda c, u, mid, rc, p: subscribed.put(True)
        self.client.connect(creds.host, creds.port)
        self.client.loop_start()
        # replies only: "shadow/#" would echo this device's own requests back to it
        self.client.subscribe([(f"{self.root}/shadow/get/+", 1), (f"{self.root}/shadow/update/+", 1)])
        subscribed.get(timeout=5)

    def send(self, suffix: str, payload: bytes | dict[str, Any]) -> None:
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.client.publish(f"{self.root}/{suffix}", raw, qos=1).wait_for_publish(5)

    def expect(self, suffix: str, timeout: float = 5.0) -> Any:
        while True:
            topic, body = self.inbox.get(timeout=timeout)
            if topic == suffix:
                return body

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
        release_sockets(self.client)


@pytest.fixture
def device(make_stack: Callable[..., LocalStack], make_api: Callable[[LocalStack], Api]) -> Iterator[Device]:
    stack = make_stack(edge=False)
    creds = activate_node(make_api(stack), "device-1")
    dev = Device(creds, stack.config.topic_root)
    yield dev
    dev.close()


def test_get_and_update_by_the_contract(device: Device) -> None:
    device.send("shadow/get", {"clientToken": "g1"})
    doc = device.expect("shadow/get/accepted")
    assert doc["clientToken"] == "g1" and doc["version"] == 0
    # a new node is matched to no app yet: desired.apps exists, empty, so removals work later
    assert doc["state"] == {"desired": {"apps": {}}, "reported": {}, "delta": {}}

    device.send("shadow/update", {"state": {"reported": {"temp": 21}}, "version": 0, "clientToken": "u1"})
    accepted = device.expect("shadow/update/accepted")
    assert accepted["state"] == {"reported": {"temp": 21}}
    assert accepted["version"] == 1 and accepted["clientToken"] == "u1"
    assert accepted["metadata"]["reported"]["temp"]["timestamp"] == accepted["timestamp"]
    documents = device.expect("shadow/update/documents")
    assert documents["previous"]["version"] == 0 and documents["current"]["state"]["reported"] == {"temp": 21}


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"{not json", 400),
        (b"\xff\xfe\x00", 415),
        ({"state": {"reported": {"a": 1}}, "version": 99, "clientToken": "stale"}, 409),
        ({"state": {"reported": {"blob": "x" * 300_000}}}, 413),
        ({"state": {"desired": {"fan": "on"}}, "clientToken": "sneaky"}, 403),
        ({"state": {"reported": {"l": [1, None]}}}, 400),
    ],
)
def test_documented_rejections(device: Device, payload: bytes | dict[str, Any], code: int) -> None:
    device.send("shadow/update", payload)
    rejected = device.expect("shadow/update/rejected")
    assert rejected["code"] == code
    assert rejected["message"] and isinstance(rejected["timestamp"], int)
    if isinstance(payload, dict) and "clientToken" in payload:
        assert rejected["clientToken"] == payload["clientToken"]
    # the document is unchanged and the cloud still serves
    device.send("shadow/get", {})
    assert device.expect("shadow/get/accepted")["version"] == 0


@pytest.mark.skipif(shutil.which("mosquitto_pub") is None, reason="mosquitto_pub is not installed")
def test_the_readme_example_with_mosquitto_clients(device: Device) -> None:
    """What the README shows: mosquitto_pub as the node, answered on the documented topics."""
    creds_host, creds_port = device.client.host, device.client.port
    username = device.client.username
    password = device.client.password
    assert username is not None and password is not None
    subprocess.run(
        ["mosquitto_pub", "-h", creds_host, "-p", str(creds_port), "-u", username.decode() if isinstance(username, bytes) else username,
         "-P", password.decode() if isinstance(password, bytes) else password, "-q", "1",
         "-t", f"{device.root}/shadow/update", "-m", '{"state":{"reported":{"temp":22}}}'],
        check=True, timeout=10,
    )
    assert device.expect("shadow/update/accepted")["state"] == {"reported": {"temp": 22}}
