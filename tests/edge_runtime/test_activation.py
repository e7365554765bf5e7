"""Activation: the token exchange, the identity file it writes, and the failures' messages."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from edge_runtime.activation import activate
from edge_runtime.cli import app
from edge_runtime.errors import ActivationError, IdentityError, NotActivated
from edge_runtime.identity import IDENTITY_FILENAME, load_identity

ANSWER = {"namespace": "default", "node": "edge-1",
          "mqtt": {"url": "mqtt://127.0.0.1:1883", "username": "default/edge-1",
                   "password": "pw-123"}}


def mock(status: int, body: object) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/activate"
        assert json.loads(request.content) == {"token": "tok"}
        return httpx.Response(status, json=body)
    return httpx.MockTransport(handler)


def test_success_writes_a_private_identity(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    data_dir = tmp_path / "edge"
    identity = activate("http://cloud.test/", "tok", data_dir, transport=mock(200, ANSWER))
    assert (identity.namespace, identity.node) == ("default", "edge-1")
    path = data_dir / IDENTITY_FILENAME
    assert path.stat().st_mode & 0o777 == 0o600
    assert data_dir.stat().st_mode & 0o777 == 0o700
    assert json.loads(path.read_text())["mqtt"]["password"] == "pw-123"
    loaded = load_identity(data_dir)
    assert loaded == identity and loaded.mqtt.password is not None
    assert loaded.mqtt.password.get_secret_value() == "pw-123"
    assert "pw-123" not in repr(loaded) and "pw-123" not in caplog.text


def test_refused_token_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ActivationError, match=r"refused \(used or expired\): ask for a new one"):
        refused = mock(401, {"code": 401, "message": "bad token"})
        activate("http://cloud.test", "tok", tmp_path, transport=refused)
    assert not (tmp_path / IDENTITY_FILENAME).exists()


@pytest.mark.parametrize(("status", "body", "message"), [
    (500, {"code": 500, "message": "db down"}, "the cloud answered 500: db down"),
    (200, {**ANSWER, "node": "Bad_Name"}, "not usable"),
    (200, {**ANSWER, "mqtt": {**ANSWER["mqtt"], "username": "other/edge-1"}}, "not usable"),
    (200, {**ANSWER, "mqtt": {**ANSWER["mqtt"], "url": "http://x"}}, "not usable"),
])
def test_bad_answers_are_one_line_errors(
    tmp_path: Path, status: int, body: object, message: str
) -> None:
    with pytest.raises(ActivationError, match=message) as info:
        activate("http://cloud.test", "tok", tmp_path, transport=mock(status, body))
    assert "\n" not in str(info.value)


def test_unreachable_cloud_is_a_one_line_error(tmp_path: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    expected = r"cannot reach the cloud at http://cloud.test: \[Errno 111\]"
    with pytest.raises(ActivationError, match=expected):
        activate("http://cloud.test", "tok", tmp_path, transport=httpx.MockTransport(refuse))


def test_missing_and_broken_identities(tmp_path: Path) -> None:
    with pytest.raises(NotActivated, match=r"run `tether edge activate --cloud URL --token T`"):
        load_identity(tmp_path)
    (tmp_path / IDENTITY_FILENAME).write_text('{"namespace": "default"}')
    with pytest.raises(IdentityError, match="activate this node again"):
        load_identity(tmp_path)


@pytest.fixture
def cloud_server() -> Iterator[str]:
    """A real HTTP server on port 0 that accepts the token "good" once."""
    used: set[str] = set()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # http.server's naming
            token = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["token"]
            ok = token == "good" and token not in used
            used.add(token)
            refusal = {"code": 401, "message": "token used or expired"}
            body = json.dumps(ANSWER if ok else refusal).encode()
            self.send_response(200 if ok else 401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_cli_activate_against_a_real_server(tmp_path: Path, cloud_server: str) -> None:
    runner = CliRunner()
    args = ["activate", "--cloud", cloud_server, "--token", "good", "--password",
            "--data-dir", str(tmp_path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "activated node default/edge-1" in result.output
    again = runner.invoke(app, args)  # the token is single-use
    assert again.exit_code == 1
    assert again.output.strip().startswith("error: the activation token was refused")
    assert len(again.output.strip().splitlines()) == 1
