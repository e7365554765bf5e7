"""The bridge retries refused subscriptions with backoff and says why it is not serving."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from cloud_api.metrics import Metrics
from cloud_api.mqtt import bridge as bridging
from cloud_api.mqtt.bridge import Bridge
from cloud_api.settings import CloudSettings

GRANTED = ReasonCode(PacketTypes.SUBACK, identifier=1)
REFUSED = ReasonCode(PacketTypes.SUBACK, identifier=0x87)  # not authorized


def test_a_refused_subscription_is_retried_until_granted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bridging, "RESUBSCRIBE_SECONDS", (0.05, 0.2))
    bridge = Bridge(CloudSettings(data_dir=tmp_path), password="x", metrics=Metrics())
    asked: list[Any] = []
    monkeypatch.setattr(bridge.client, "subscribe", lambda filters: asked.append(filters))
    bridge.outbound._ready.set()  # no broker here: the publishing connection counts as up
    try:
        filters = len(bridge._filters)
        bridge._on_subscribe(bridge.client, None, 1, [REFUSED] + [GRANTED] * (filters - 1), None)
        assert not bridge.connected
        assert bridge.problem is not None and "refused the bridge's subscriptions" in bridge.problem
        assert bridge._filters[0] in bridge.problem and bridge.refused
        deadline = time.monotonic() + 5
        while not asked:
            assert time.monotonic() < deadline, "the refused subscription was not retried"
            time.sleep(0.01)
        bridge._on_subscribe(bridge.client, None, 2, [GRANTED] * filters, None)
        assert bridge.connected and bridge.problem is None and bridge.refused == []
    finally:
        bridge.stop(timeout=1)
