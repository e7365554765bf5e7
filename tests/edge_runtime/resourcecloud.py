"""The cloud's side of ``resources/get`` for tests, until the real cloud serves it.

``Catalog`` holds resource values by (kind, name, version) and answers a request the way
DESIGN §4 says the cloud will: every item with its value on ``resources/get/accepted``,
or ``resources/get/rejected`` with a 404 naming the first unknown item. Values are built
with the ``schemas`` models, so the engine is tested against the contract.
``ResourceCloud`` is ``MqttCloud`` answering ``resources/get`` from a catalog as well.
Helpers build the small apps the tests run natively.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import paho.mqtt.client as mqtt

from schemas.errors import ErrorCode, Rejection
from schemas.payloads import decode_json
from schemas.resources import App, Config, Model, ResourceItem, ResourceKind, Secret
from schemas.shadow import JSONObject
from schemas.topics import Suffix, TopicScheme
from tests.edge_runtime.fakes import MemoryCloud
from tests.edge_runtime.mqttcloud import MqttCloud

Key = tuple[str, str, str]


class Catalog:
    """Resource versions the test cloud can serve, and the requests it was sent."""

    def __init__(self) -> None:
        self.values: dict[Key, JSONObject] = {}
        self.requests: list[list[JSONObject]] = []
        self.lock = threading.Lock()

    def add(self, model: Model, version: str) -> Key:
        kind = next(k for k, cls in _KINDS.items() if isinstance(model, cls))
        key = (kind.value, model.name, version)
        self.values[key] = model.wire()
        return key

    def answer(self, payload: Any) -> tuple[Suffix, JSONObject]:
        token = payload.get("clientToken") if isinstance(payload, dict) else None
        items = payload.get("items", []) if isinstance(payload, dict) else []
        with self.lock:
            self.requests.append(items)
        answered = []
        for item in items:
            key = (item["kind"], item["name"], item["version"])
            if key not in self.values:
                kind, name, version = key
                refusal = Rejection(ErrorCode.NOT_FOUND, f"no {kind} {name} at version {version}")
                body = refusal.payload(timestamp=1, client_token=token)
                return Suffix.RESOURCES_GET_REJECTED, body
            answered.append(ResourceItem(kind=key[0], name=key[1], version=key[2],
                                         value=self.values[key]).wire())
        return Suffix.RESOURCES_GET_ACCEPTED, {"clientToken": token, "items": answered}


_KINDS: dict[ResourceKind, type[Model]] = {
    ResourceKind.APP: App, ResourceKind.CONFIG: Config, ResourceKind.SECRET: Secret,
}


class ResourceCloud(MqttCloud):
    """``MqttCloud`` that also answers ``resources/get`` from ``catalog``.

    Like the real cloud (``cloud_api.services.shadows.publish_update``), it publishes
    ``update/accepted`` for desired changes before the delta: a delta alone cannot tell a
    node that an app it never reported (one whose fetch failed) is no longer desired.
    """

    def __init__(self, url: str, topics: TopicScheme, catalog: Catalog) -> None:
        self.catalog = catalog
        super().__init__(url, topics)
        subscribed = threading.Event()
        self._client.on_subscribe = lambda *args: subscribed.set()
        self._client.subscribe(f"{topics.root}/+/+/{Suffix.RESOURCES_GET.value}", 1)
        if not subscribed.wait(5):
            raise RuntimeError("the test cloud could not subscribe to resources/get")

    def node(self, namespace: str, name: str) -> MemoryCloud:
        with self._changed:
            return self.nodes.setdefault((namespace, name), MemoryCloud(echo_desired_accepted=True))

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        parsed = self.topics.parse(message.topic)
        if parsed is not None and parsed.suffix is Suffix.RESOURCES_GET:
            suffix, reply = self.catalog.answer(decode_json(message.payload, max_bytes=1 << 20))
            self._publish(parsed.namespace, parsed.node, suffix, reply)
            return
        super()._on_message(client, userdata, message)


def python_service(name: str, code: str, **fields: Any) -> dict[str, Any]:
    """A service running ``python -c code`` with this interpreter."""
    return {"name": name, "command": [sys.executable, "-c", code], **fields}


SLEEPER = "import time\nwhile True: time.sleep(1)"


def native_app(name: str, *services: dict[str, Any], **fields: Any) -> App:
    return App.model_validate({"name": name, "services": list(services) or
                               [python_service("main", SLEEPER)], **fields})
