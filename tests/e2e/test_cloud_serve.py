"""``tether cloud serve --embedded-broker``: the cloud and the broker in one process."""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import free_port
from tests.e2e.test_third_party_client import Credentials, Device


def test_cloud_serve_with_the_embedded_broker(tmp_path: Path) -> None:
    http_port, mqtt_port = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tether", "cloud", "serve", "--embedded-broker", "--data-dir", str(tmp_path),
         "--http-port", str(http_port), "--mqtt-port", str(mqtt_port), "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        assert process.stdout is not None
        banner = "".join(process.stdout.readline() for _ in range(3))
        assert f"API: http://127.0.0.1:{http_port}" in banner, banner
        assert f"embedded MQTT broker: mqtt://127.0.0.1:{mqtt_port}" in banner, banner
        token = (tmp_path / "admin.token").read_text().strip()
        with httpx.Client(base_url=f"http://127.0.0.1:{http_port}", headers={"Authorization": f"Bearer {token}"}) as api:
            api.post("/v1/namespaces/default/nodes", json={"name": "n1"}).raise_for_status()
            one_time = api.get("/v1/namespaces/default/nodes/n1/init", params={"mode": "native"}).json()["token"]
            mqtt = api.post("/v1/activate", json={"token": one_time}).json()["mqtt"]
        assert re.fullmatch(rf"mqtt://127\.0\.0\.1:{mqtt_port}", mqtt["url"])
        device = Device(Credentials("default", "n1", "127.0.0.1", mqtt_port, mqtt["username"], mqtt["password"]), "tether/v1")
        try:
            deadline = time.monotonic() + 10
            while True:  # the bridge subscribes right after start; ask until it answers
                device.send("shadow/get", {"clientToken": "c1"})
                try:
                    assert device.expect("shadow/get/accepted", timeout=0.5)["clientToken"] == "c1"
                    break
                except queue.Empty:
                    if time.monotonic() > deadline:
                        raise
        finally:
            device.close()
        process.send_signal(signal.SIGINT)
        assert process.wait(15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
