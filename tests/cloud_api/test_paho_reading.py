"""The bridge's paho client: what it changes of paho's reading and dispatching."""

from __future__ import annotations

import gc
import types
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from cloud_api.mqtt.paho_reading import BufferedClient


@pytest.fixture
def client() -> Iterator[BufferedClient]:
    made = BufferedClient(CallbackAPIVersion.VERSION2, client_id="t", protocol=mqtt.MQTTv311)
    yield made


def _message(topic: bytes) -> mqtt.MQTTMessage:
    message = mqtt.MQTTMessage(topic=topic)
    message.payload = b"{}"
    return message


def test_messages_reach_on_message_without_leaving_cycles(client: BufferedClient) -> None:
    seen: list[str] = []
    client.on_message = lambda c, userdata, message: seen.append(message.topic)
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for index in range(100):
            client._handle_on_message(_message(f"tether/ns/n{index}/shadow/update".encode()))
        gc.collect()
        closures = [o for o in gc.garbage if isinstance(o, types.FunctionType)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert len(seen) == 100
    assert closures == []  # paho's matcher left one recursive closure per message


def test_per_filter_callbacks_still_take_their_messages(client: BufferedClient) -> None:
    general: list[str] = []
    filtered: list[str] = []

    def on_filtered(c: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        filtered.append(message.topic)

    client.on_message = lambda c, userdata, message: general.append(message.topic)
    client.message_callback_add("tether/+/+/status", on_filtered)
    client._handle_on_message(_message(b"tether/ns/a/status"))
    client._handle_on_message(_message(b"tether/ns/a/shadow/get"))
    assert filtered == ["tether/ns/a/status"]
    assert general == ["tether/ns/a/shadow/get"]
    client.message_callback_remove("tether/+/+/status")
    client._handle_on_message(_message(b"tether/ns/a/status"))
    assert general == ["tether/ns/a/shadow/get", "tether/ns/a/status"]
