"""``tether bench roundtrip``: PATCH desired through REST until the node has reported it.

One round trip is: REST ``PATCH .../shadow`` of ``desired.properties.seq`` -> the cloud
stores it and publishes the delta -> the edge (a real ``tether edge run`` child process)
reports the property -> the cloud stores the report and publishes
``shadow/update/documents`` with that ``seq`` reported and an empty delta. An observer
subscribed to that topic stops the clock. Every store write is durable (SQLite
``synchronous=FULL``), as in production.
"""

from __future__ import annotations

import json
import math
import queue
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from launcher.stack import LocalStack, StackConfig
from schemas.topics import Suffix


def percentile(samples: list[float], pct: float) -> float:
    """Nearest-rank percentile of ``samples`` (not empty)."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Summary:
    name: str
    samples_ms: list[float]

    def row(self) -> dict[str, Any]:
        s = self.samples_ms
        return {
            "name": self.name,
            "count": len(s),
            "p50_ms": round(percentile(s, 50), 2),
            "p90_ms": round(percentile(s, 90), 2),
            "p99_ms": round(percentile(s, 99), 2),
            "max_ms": round(max(s), 2),
            "mean_ms": round(sum(s) / len(s), 2),
        }


def _observer(stack: LocalStack, topic: str) -> tuple[mqtt.Client, queue.Queue[dict[str, Any]]]:
    assert stack.cloud is not None
    url = urlsplit(stack.mqtt_url)
    inbox: queue.Queue[dict[str, Any]] = queue.Queue()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{uuid.uuid4().hex[:8]}")
    client.username_pw_set(stack.cloud.settings.mqtt_username, stack.bridge_password())
    subscribed = queue.Queue[bool]()
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
    client.on_subscribe = lambda c, u, mid, rcs, p: subscribed.put(True)
    client.on_message = lambda c, u, msg: inbox.put(json.loads(msg.payload))
    client.connect(url.hostname or "127.0.0.1", url.port or 1883)
    client.loop_start()
    subscribed.get(timeout=10)
    return client, inbox


def _wait_reported(inbox: queue.Queue[dict[str, Any]], seq: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"the node did not report seq={seq} within {timeout} s")
        doc = inbox.get(timeout=remaining)["current"]
        props = doc["state"]["reported"].get("properties", {})
        if props.get("seq") == seq and not doc["state"]["delta"]:
            return


def run_roundtrip(
    *, count: int = 200, warmup: int = 20, mqtt_url: str | None = None, data_dir: Path | None = None,
    timeout: float = 10.0,
) -> list[Summary]:
    """Start a stack (embedded broker, or ``mqtt_url``), measure ``count`` round trips."""
    with tempfile.TemporaryDirectory(prefix="tether-bench-") as scratch:
        root = f"bench{uuid.uuid4().hex[:8]}/tether/v1"
        config = StackConfig(
            data_dir=data_dir or Path(scratch), http_port=0, mqtt_port=0, mqtts_port=None,
            external_mqtt_url=mqtt_url, topic_root=root,
        )
        with LocalStack(config) as stack:
            assert stack.cloud is not None
            topic = stack.cloud.settings.topics.topic(config.namespace, config.local_node, Suffix.SHADOW_UPDATE_DOCUMENTS)
            observer, inbox = _observer(stack, topic)
            headers = {"Authorization": f"Bearer {stack.admin_token()}"}
            url = f"{stack.api_url}/v1/namespaces/{config.namespace}/nodes/{config.local_node}/shadow"
            roundtrips: list[float] = []
            patches: list[float] = []
            try:
                with httpx.Client(headers=headers, timeout=timeout) as http:
                    _wait_online(http, url, timeout=30)
                    for seq in range(1, warmup + count + 1):
                        body = {"state": {"desired": {"properties": {"seq": seq}}}}
                        start = time.perf_counter()
                        http.patch(url, json=body).raise_for_status()
                        patched = time.perf_counter()
                        _wait_reported(inbox, seq, timeout)
                        done = time.perf_counter()
                        if seq > warmup:
                            patches.append((patched - start) * 1000)
                            roundtrips.append((done - start) * 1000)
            finally:
                observer.loop_stop()
                observer.disconnect()
    return [Summary("round trip (PATCH -> reported)", roundtrips), Summary("REST PATCH alone", patches)]


def _wait_online(http: httpx.Client, url: str, *, timeout: float) -> None:
    """Wait until the node has reported its facts: it is connected and in sync."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = http.get(url)
        if response.status_code == 200 and response.json()["state"]["reported"].get("node"):
            return
        time.sleep(0.05)
    raise TimeoutError(f"the local node did not report within {timeout} s")
