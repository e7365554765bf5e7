"""``tether broker serve --tls-port --certfile --keyfile --cafile``: a standalone broker
with the mTLS listener, asking a real cloud about each certificate's serial."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from broker.plugins import HttpAuthenticator
from cloud_api.runtime import Cloud
from tests.broker.tls_clients import TlsProbe, certified_node, client_context
from tests.cloud_api.conftest import admin_token, serving

ROOT = Path(__file__).resolve().parents[2]
NODE = "default/tls-1"


def test_the_authenticator_sends_the_serial_of_a_certificate_client() -> None:
    asked: list[dict[str, str]] = []

    def cloud(request: httpx.Request) -> httpx.Response:
        asked.append(json.loads(request.content))
        return httpx.Response(200 if asked[-1].get("certificateSerial") == "ab12" else 401)

    auth = HttpAuthenticator("http://cloud.test/v1/broker/authenticate", "t",
                             transport=httpx.MockTransport(cloud))

    async def run() -> list[bool]:
        try:
            return [await auth.check_certificate(NODE, "ab12"), await auth.check_certificate(NODE, "ff")]
        finally:
            await auth.aclose()

    assert asyncio.run(run()) == [True, False]
    assert asked == [{"username": NODE, "certificateSerial": "ab12"},
                     {"username": NODE, "certificateSerial": "ff"}]


@pytest.fixture
def cloud(certifying_cloud: Cloud) -> Cloud:
    return certifying_cloud


def test_serve_with_tls_admits_a_current_certificate_and_refuses_a_revoked_one(
    cloud: Cloud, tmp_path: Path
) -> None:
    tls = cloud.issue_server_certificate(tmp_path / "broker-tls")
    files = certified_node(cloud, "tls-1", tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_BROKER_")}
    with serving(cloud.app) as url:
        process = subprocess.Popen(
            [sys.executable, "-c", "from broker.cli import app; app()", "serve", "--port", "0",
             "--tls-port", "0", "--certfile", str(tls.certfile), "--keyfile", str(tls.keyfile),
             "--cafile", str(tls.cafile), "--auth-url", f"{url}/v1/broker/authenticate",
             "--auth-token", admin_token(cloud)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        probes: list[TlsProbe] = []
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            found = re.search(r"and mqtts://127\.0\.0\.1:(\d+) ", line)
            assert found, line
            port = int(found.group(1))
            probes.append(TlsProbe(port, client_context(tls.cafile, files)))
            code = probes[-1].connect()
            assert code is not None and not code.is_failure
            cloud.revoke_node("tls-1")
            probes.append(TlsProbe(port, client_context(tls.cafile, files)))
            code = probes[-1].connect()
            assert code is None or code.is_failure
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=30) == 0
        finally:
            for probe in probes:
                probe.close()
            if process.poll() is None:
                process.kill()
            process.communicate(timeout=30)
