"""``tether broker serve``: refuses to run unauthenticated, says so in one line, serves."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from broker.cli import app
from tests.broker.clients import connect_packet, raw_connect

ROOT = Path(__file__).resolve().parents[2]
AUTH = ["--auth-url", "http://127.0.0.1:9/v1/broker/authenticate", "--auth-token", "t"]


@pytest.fixture(autouse=True)
def _no_broker_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("TETHER_BROKER_"):
            monkeypatch.delenv(name)


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def test_serve_without_an_auth_url_refuses_in_one_line() -> None:
    result = CliRunner().invoke(app, ["serve", "--port", "0"])
    assert result.exit_code == 2
    assert _one_line(result.stderr).startswith("tether broker: --auth-url is required")


def test_serve_with_an_auth_url_but_no_token_refuses() -> None:
    result = CliRunner().invoke(app, ["serve", "--auth-url", "http://cloud/x"])
    assert result.exit_code == 2
    assert "--auth-token is required" in _one_line(result.stderr)


def test_an_invalid_setting_is_one_line() -> None:
    result = CliRunner().invoke(app, ["serve", "--topic-root", "a/#", *AUTH])
    assert result.exit_code == 2
    assert _one_line(result.stderr).startswith("tether broker: invalid topic_root")


def test_a_port_in_use_is_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["serve", "--port", str(port), *AUTH])
    assert result.exit_code == 1
    assert _one_line(result.stderr) == (
        f"tether broker: port {port} on 127.0.0.1 is in use: stop the other broker or pass --port"
    )


@pytest.fixture
def served() -> Iterator[tuple[subprocess.Popen[str], int]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_BROKER_")}
    process = subprocess.Popen(
        [sys.executable, "-c", "from broker.cli import app; app()", "serve", "--port", "0", *AUTH],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        found = re.search(r"serving mqtt://127\.0\.0\.1:(\d+) ", line)
        assert found, line
        yield process, int(found.group(1))
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


def test_serve_prints_its_url_checks_passwords_with_the_cloud_and_stops_on_ctrl_c(
    served: tuple[subprocess.Popen[str], int],
) -> None:
    process, port = served
    sock, code = raw_connect(port, connect_packet("n", "ns1/node-a", "pw"))
    sock.close()
    assert code == 5  # the cloud at --auth-url does not answer: nobody gets in
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 0
