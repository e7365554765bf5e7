"""``tether cloud serve --tls-generate`` / ``--tls-cert --tls-key``: the API over HTTPS,
verified with the cloud's own CA."""

from __future__ import annotations

import re
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from cloud_api.security.pki import CertificateAuthority


def serve(tmp_path: Path, *flags: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tether", "cloud", "serve", "--data-dir", str(tmp_path / "data"),
         "--http-port", "0", "--mqtt-url", "mqtt://127.0.0.1:9", "--log-level", "error", *flags],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def api_url(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    first = process.stdout.readline()
    found = re.search(r"API: (https?://127\.0\.0\.1:\d+)", first)
    assert found, first + (process.stdout.read() if process.poll() is not None else "")
    return found.group(1)


def healthz(url: str, context: ssl.SSLContext) -> int:
    """GET /healthz once the server listens (the banner comes just before uvicorn starts)."""
    deadline = time.monotonic() + 15
    while True:
        try:
            return httpx.get(f"{url}/healthz", verify=context, timeout=10).status_code
        except httpx.ConnectError as exc:
            if "refused" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout is not None:
        process.stdout.close()


def test_tls_generate_serves_https_with_a_certificate_of_the_cloud_ca(tmp_path: Path) -> None:
    process = serve(tmp_path, "--tls-generate")
    try:
        url = api_url(process)
        assert url.startswith("https://")
        ca = tmp_path / "data" / "ca" / "ca.crt"
        context = ssl.create_default_context(cafile=str(ca))
        assert healthz(url, context) == 200
        with pytest.raises(httpx.ConnectError):  # not trusted without the CA
            httpx.get(f"{url}/healthz", timeout=10)
        with pytest.raises(httpx.HTTPError):  # and no plain HTTP on that port
            httpx.get(url.replace("https://", "http://") + "/healthz", timeout=10)
    finally:
        stop(process)
    assert process.returncode == 0


def test_tls_cert_and_key_are_served(tmp_path: Path) -> None:
    authority = CertificateAuthority.create()
    cert_pem, key_pem = authority.issue("api", sans=["127.0.0.1"], days=1, server=True)
    (tmp_path / "api.crt").write_text(cert_pem)
    (tmp_path / "api.key").write_text(key_pem)
    process = serve(tmp_path, "--tls-cert", str(tmp_path / "api.crt"), "--tls-key", str(tmp_path / "api.key"))
    try:
        url = api_url(process)
        context = ssl.create_default_context(cadata=authority.certificate_pem)
        assert healthz(url, context) == 200
    finally:
        stop(process)


def test_a_certificate_without_its_key_is_one_line(tmp_path: Path) -> None:
    process = serve(tmp_path, "--tls-cert", str(tmp_path / "api.crt"))
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 1
    assert output.strip().startswith("error:") and len(output.strip().splitlines()) == 1, output
