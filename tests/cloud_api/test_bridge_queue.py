"""The bridge's queues: a request that waited past ``bridge_stale_seconds`` is dropped (its
node has re-sent it), a status never is, and a full queue refuses requests but not statuses."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import paho.mqtt.client as mqtt

from cloud_api.metrics import BRIDGE_ERRORS, Metrics
from cloud_api.mqtt.bridge import Bridge
from cloud_api.settings import CloudSettings
from schemas.errors import Rejection
from schemas.topics import Suffix


def message(bridge: Bridge, suffix: Suffix) -> mqtt.MQTTMessage:
    msg = mqtt.MQTTMessage(topic=bridge.topics.topic("default", "n1", suffix).encode())
    msg.payload = b"{}"
    return msg


def test_stale_requests_are_dropped_and_statuses_kept(tmp_path: Path) -> None:
    metrics = Metrics()
    settings = CloudSettings(data_dir=tmp_path, bridge_workers=1, bridge_stale_seconds=0.2)
    bridge = Bridge(settings, password="x", metrics=metrics)
    batches: list[list[str]] = []
    entered, release = threading.Event(), threading.Event()

    def handle(batch: Sequence[tuple[str, bytes]]) -> None:
        batches.append([topic.rsplit("/n1/", 1)[1] for topic, _ in batch])
        entered.set()
        release.wait(5)

    bridge._handle = handle
    worker = threading.Thread(target=bridge._work, args=(bridge._queues[0],), daemon=True)
    worker.start()
    try:
        bridge._on_message(bridge.client, None, message(bridge, Suffix.SHADOW_GET))
        assert entered.wait(5)  # the worker holds the first batch
        for suffix in (Suffix.SHADOW_UPDATE, Suffix.STATUS, Suffix.RESOURCES_GET):
            bridge._on_message(bridge.client, None, message(bridge, suffix))
        threading.Event().wait(0.3)  # they are stale now
        bridge._on_message(bridge.client, None, message(bridge, Suffix.SHADOW_GET))  # fresh
        release.set()
    finally:
        bridge._queues[0].put(None)
        worker.join(5)
    assert batches == [["shadow/get"], ["status", "shadow/get"]]
    assert metrics.value(BRIDGE_ERRORS, kind="stale") == 2


def test_a_full_queue_refuses_requests_but_keeps_statuses(tmp_path: Path) -> None:
    settings = CloudSettings(data_dir=tmp_path, bridge_workers=1, bridge_queue_size=1)
    bridge = Bridge(settings, password="x", metrics=Metrics())
    refused: list[tuple[str, int]] = []

    def refuse(topic: str, payload: bytes, rejection: Rejection) -> None:
        refused.append((topic.rsplit("/n1/", 1)[1], int(rejection.code)))

    bridge._refuse = refuse
    for suffix in (Suffix.SHADOW_GET, Suffix.SHADOW_UPDATE, Suffix.STATUS, Suffix.STATUS):
        bridge._on_message(bridge.client, None, message(bridge, suffix))
    assert refused == [("shadow/update", 429)]
    assert bridge._queues[0].qsize() == 3
