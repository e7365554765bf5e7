"""Durable before accepted, order per node, through the real bridge and broker: a node sends
many reports without waiting, the cloud process is killed with SIGKILL the moment the last
``accepted`` arrives, and the database holds every one of them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from cloud_api.services.shadows import get_document
from cloud_api.settings import sqlalchemy_url
from cloud_api.store.engine import Store
from schemas.topics import Suffix, TopicScheme
from tests.cloud_api.test_bridge import TIMEOUT, FakeNode
from tests.conftest import free_port

pytestmark = pytest.mark.mosquitto


def start_cloud(data_dir: Path, store_url: str, mqtt_url: str, topics: TopicScheme) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "TETHER_CLOUD_TOPIC_ROOT": topics.root}
    process = subprocess.Popen(
        [sys.executable, "-m", "tether", "cloud", "serve", "--data-dir", str(data_dir),
         "--database-url", store_url, "--mqtt-url", mqtt_url, "--http-port", str(port),
         "--log-level", "warning"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    api = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{api}/healthz", timeout=1).json().get("bridge") == "connected":
                return process, api
        except (httpx.HTTPError, ValueError):
            pass
        if process.poll() is not None:
            pytest.fail(f"the cloud exited with {process.returncode}")
        time.sleep(0.1)
    process.kill()
    pytest.fail("the cloud did not connect its bridge in 30 s")


def test_every_accepted_report_survives_a_sigkill_in_order(
    store_url: str, mosquitto_url: str, topic_scheme: TopicScheme, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    cloud, api = start_cloud(data, store_url, mosquitto_url, topic_scheme)
    try:
        token = (data / "admin.token").read_text().strip()
        created = httpx.post(f"{api}/v1/namespaces/default/nodes", json={"name": "n1"},
                             headers={"Authorization": f"Bearer {token}"})
        assert created.status_code == 201, created.text
        node = FakeNode(mosquitto_url, topic_scheme)
        count = 60
        for i in range(count):  # all at once: the bridge batches them
            node.send(Suffix.SHADOW_UPDATE, {"state": {"reported": {"seq": i, f"k{i}": i}},
                                             "clientToken": f"t{i}"})
        accepted = []
        replies = ("/shadow/update/accepted", "/shadow/update/rejected")
        while len(accepted) < count:
            _, body = node.next(lambda topic, body: topic.endswith(replies))
            accepted.append(body)
        cloud.send_signal(signal.SIGKILL)  # the moment the last accepted arrived
        cloud.wait(TIMEOUT)
        node.client.disconnect()
    finally:
        if cloud.poll() is None:
            cloud.kill()
            cloud.wait()
    assert [body.get("clientToken") for body in accepted] == [f"t{i}" for i in range(count)]
    assert [body.get("version") for body in accepted] == list(range(1, count + 1))
    store = Store(sqlalchemy_url(store_url))
    try:
        with store.session() as session:
            document = get_document(session, "default", "n1")
    finally:
        store.close()
    assert document.version == count
    assert document.reported["seq"] == count - 1
    assert all(document.reported[f"k{i}"] == i for i in range(count))
