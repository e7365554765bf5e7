"""Security end to end: create a node, fetch its install artefacts, activate it with a CSR,
run the edge over mTLS until its shadow converges, revoke it; and no secret in any log.

The stack is ``tether up``'s (its local node, which uses a password, is left out): the
cloud's CA issues the embedded broker's server certificate, the broker asks the cloud about
passwords and certificate serials, and the cloud's revocations disconnect at once.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from cloud_api.runtime import Cloud
from launcher.stack import LocalStack
from tests.e2e.conftest import Api, wait_until

NS, NODE = "default", "secure-1"


@dataclass
class SecureStack:
    """A stack with the embedded broker's mTLS listener, and the edge child of the test."""

    stack: LocalStack
    api: httpx.Client
    edge: subprocess.Popen[bytes] | None = None

    @property
    def api_url(self) -> str:
        return self.stack.api_url

    @property
    def cloud(self) -> Cloud | None:
        return self.stack.cloud


@pytest.fixture
def stack(
    make_stack: Callable[..., LocalStack], make_api: Callable[[LocalStack], Api]
) -> Iterator[SecureStack]:
    local = make_stack(edge=False)
    assert local.mqtts_url is not None, "the stack has no mTLS listener"
    made = SecureStack(local, make_api(local).client)
    try:
        yield made
    finally:
        if made.edge is not None and made.edge.poll() is None:
            made.edge.terminate()
            try:
                made.edge.wait(10)
            except subprocess.TimeoutExpired:
                made.edge.kill()
                made.edge.wait()


def tether(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tether", *args], capture_output=True, text=True, timeout=60,
        env={**os.environ, **(env or {})}, check=False,
    )


def test_activate_with_a_csr_run_over_mtls_revoke_and_leak_nothing(
    stack: SecureStack, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    api = stack.api
    assert api.post(f"/v1/namespaces/{NS}/nodes", json={"name": NODE}).status_code == 201
    init = api.get(f"/v1/namespaces/{NS}/nodes/{NODE}/init", params={"mode": "native"}).json()
    token = init["token"]
    assert token in init["command"] and init["command"].endswith("| sudo sh")

    script = httpx.get(f"{stack.api_url}/v1/init/install.sh", params={"token": token}).text
    assert "PRIVATE KEY" not in script and f"{NS}/{NODE}" in script

    edge_dir = tmp_path / "edge"
    activated = tether("edge", "activate", "--cloud", stack.api_url, "--node", f"{NS}/{NODE}",
                       "--data-dir", str(edge_dir), env={"TETHER_ACTIVATION_TOKEN": token})
    assert activated.returncode == 0, activated.stderr
    for name, mode in (("node.key", 0o600), ("identity.json", 0o600)):
        assert (edge_dir / name).stat().st_mode & 0o777 == mode
    assert edge_dir.stat().st_mode & 0o777 == 0o700
    identity = json.loads((edge_dir / "identity.json").read_text())
    assert identity["mqtt"]["url"].startswith("mqtts://") and "password" not in identity["mqtt"]
    key = (edge_dir / "node.key").read_text()

    replay = httpx.post(f"{stack.api_url}/v1/activate", json={"token": token})
    assert replay.status_code == 401

    log_path = tmp_path / "edge.log"
    with log_path.open("wb") as log:
        stack.edge = subprocess.Popen(
            [sys.executable, "-m", "tether", "edge", "run", "--data-dir", str(edge_dir), "-v"],
            stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "TETHER_EDGE_TOPIC_ROOT": stack.stack.config.topic_root},
        )
    shadow = f"/v1/namespaces/{NS}/nodes/{NODE}/shadow"
    assert api.patch(shadow, json={"state": {"desired": {"properties": {"fan": "on"}}}}).status_code == 200

    def converged() -> dict[str, Any] | None:
        doc: dict[str, Any] = api.get(shadow).json()
        reported = doc["state"].get("reported", {}).get("properties", {})
        return doc if reported.get("fan") == "on" and not doc["state"].get("delta") else None

    wait_until(converged, timeout=20, what="the shadow to converge over mTLS")

    # revocation: the node is disconnected now and refused on reconnect
    assert api.post(f"/v1/namespaces/{NS}/nodes/{NODE}/revoke").status_code == 204
    wait_until(lambda: api.get(f"/v1/namespaces/{NS}/nodes/{NODE}").json()["online"] is False,
               timeout=10, what="the revoked node to go offline")
    time.sleep(1.5)  # its reconnect attempts are refused
    assert api.get(f"/v1/namespaces/{NS}/nodes/{NODE}").json()["online"] is False

    stack.edge.terminate()
    stack.edge.wait(10)
    edge_output = log_path.read_text(errors="replace")
    assert "refused this node" in edge_output

    # The test's own HTTP client (httpx) logs the URLs it fetches, the install script's
    # token among them; that is this test's logging, not Tether's. Every other record,
    # the cloud's, the broker's (amqtt's included) and the edge's, is checked.
    ours = "\n".join(
        r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))
    )
    everything = ours + edge_output + activated.stdout + activated.stderr
    for secret in (token, key.strip(), "BEGIN PRIVATE KEY", stack.cloud.bridge_password if stack.cloud else ""):
        assert secret and secret not in everything, "a secret reached a log"


def test_the_token_is_handed_out_once(stack: SecureStack) -> None:
    api = stack.api
    api.post(f"/v1/namespaces/{NS}/nodes", json={"name": NODE}).raise_for_status()
    first = api.get(f"/v1/namespaces/{NS}/nodes/{NODE}/init").json()["token"]
    second = api.get(f"/v1/namespaces/{NS}/nodes/{NODE}/init").json()["token"]
    assert first != second
