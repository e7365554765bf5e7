"""FunctionDirectory, the runtime's pure parts and the invoke-request shape (no processes)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from edge_runtime.functions.directory import FunctionDirectory, runtime_command, write_announcement
from edge_runtime.functions.errors import BadInvocation
from edge_runtime.functions.invoking import parse_invoke_request
from edge_runtime.functions.proxy import parse_timeout
from edge_runtime.functions.runtime import FunctionContext, call, decode_event

CTX = FunctionContext(invoke_id="i1", app="a", function="f", node="n")


def test_runtime_command_is_what_the_backend_runs(tmp_path: Path) -> None:
    argv = runtime_command(code_dir=tmp_path, handler="m.h", announce=tmp_path / "0.json")
    assert argv[:3] == [sys.executable, "-m", "edge_runtime.functions.runtime"]
    assert argv[argv.index("--handler") + 1] == "m.h" and argv[argv.index("--port") + 1] == "0"


def test_instances_are_read_cached_and_rotated(tmp_path: Path) -> None:
    dead = {999}
    directory = FunctionDirectory(tmp_path, alive=lambda pid: pid not in dead)
    assert directory.instances("app", "fn") == [] and directory.pick("app", "fn") == []
    for replica, pid in enumerate((101, 102, 103)):
        write_announcement(directory.announce_path("app", "fn", replica), url=f"http://h:{pid}", pid=pid)
    assert [i.pid for i in directory.instances("app", "fn")] == [101, 102, 103]
    firsts = [directory.pick("app", "fn")[0].pid for _ in range(6)]
    assert firsts == [101, 102, 103, 101, 102, 103]
    assert len(directory.pick("app", "fn")) == 3  # the others follow as fallbacks
    # a replaced announcement (new runtime, new version) is seen at once
    write_announcement(directory.announce_path("app", "fn", 1), url="http://h:1", pid=999)
    assert [i.pid for i in directory.instances("app", "fn")] == [101, 103]  # 999 is dead
    assert directory.functions() == [("app", "fn")]
    directory.announce_path("app", "fn", 0).unlink()
    assert [i.pid for i in directory.instances("app", "fn")] == [103]


@pytest.mark.parametrize("content", [b"{half", b"[]", b'{"url": "ftp://x", "pid": 1}', b'{"url": "http://x", "pid": true}'])
def test_malformed_announcements_are_ignored(tmp_path: Path, content: bytes) -> None:
    directory = FunctionDirectory(tmp_path)
    path = directory.announce_path("app", "fn", 0)
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    assert directory.instances("app", "fn") == []


def test_bad_names_find_nothing(tmp_path: Path) -> None:
    assert FunctionDirectory(tmp_path).instances("..", "fn") == []


def test_the_real_pid_check(tmp_path: Path) -> None:
    directory = FunctionDirectory(tmp_path)
    write_announcement(directory.announce_path("a", "f", 0), url="http://h:1", pid=os.getpid())
    assert len(directory.instances("a", "f")) == 1


@pytest.mark.parametrize(
    ("body", "event"),
    [(b"", None), (b'{"a": 1}', {"a": 1}), (b"42", 42), (b"\xffraw", b"\xffraw"), (b"text", b"text")],
)
def test_decode_event(body: bytes, event: Any) -> None:
    assert decode_event(body) == event


@pytest.mark.parametrize(
    ("result", "status", "kind", "body"),
    [
        ({"sum": 3}, 200, "application/json", {"sum": 3}),
        (None, 200, "application/json", None),
        (b"\x00\x01", 200, "application/octet-stream", b"\x00\x01"),
        ({1, 2}, 500, "application/json", {"error": {"type": "TypeError"}}),
        (float("nan"), 500, "application/json", {"error": {"type": "TypeError"}}),
    ],
)
def test_call_maps_results(result: Any, status: int, kind: str, body: Any) -> None:
    got_status, got_kind, got_body = call(lambda event, ctx: result, None, CTX)
    assert (got_status, got_kind) == (status, kind)
    if isinstance(body, bytes):
        assert got_body == body
    elif status == 500:
        assert json.loads(got_body)["error"]["type"] == body["error"]["type"]
    else:
        assert json.loads(got_body) == body


def test_call_turns_an_exception_into_an_error(caplog: pytest.LogCaptureFixture) -> None:
    def boom(event: Any, ctx: FunctionContext) -> Any:
        raise ValueError(f"bad {ctx.invoke_id}")

    status, _, body = call(boom, None, CTX)
    assert status == 500 and json.loads(body) == {"error": {"type": "ValueError", "message": "bad i1"}}
    assert "Traceback" in caplog.text  # the traceback goes to the runtime's log only


@pytest.mark.parametrize(
    "raw",
    [b"[]", b"{}", b'{"invokeId": 1}', b'{"invokeId": "x", "extra": 1}', b'{"invokeId": "x", "timeout": 0}',
     b'{"invokeId": "x", "timeout": true}', b'{"invokeId": "' + b"x" * 65 + b'"}', b"\xff"],
)
def test_bad_invoke_requests(raw: bytes) -> None:
    with pytest.raises(BadInvocation):
        parse_invoke_request(raw)


def test_invoke_request_shape() -> None:
    request = parse_invoke_request(b'{"invokeId": "abc", "payload": {"a": 1}, "timeout": 2.5}')
    assert (request.invoke_id, request.payload, request.timeout) == ("abc", {"a": 1}, 2.5)
    assert parse_invoke_request(b'{"invokeId": "abc"}').payload is None


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "x"])
def test_bad_timeout_headers(value: str) -> None:
    with pytest.raises(BadInvocation):
        parse_timeout(value)
    assert parse_timeout(None) is None and parse_timeout("1.5") == 1.5


def test_an_endpoint_without_a_pid_is_trusted_until_its_file_goes(tmp_path: Path) -> None:
    """The kube backend's announcements: the backend vouches for them, no pid is checked."""
    directory = FunctionDirectory(tmp_path, alive=lambda pid: False)
    path = directory.root / "app" / "fn" / "kube.json"
    write_announcement(path, url="http://10.43.0.12:8080", pid=None)
    assert json.loads(path.read_text()) == {"url": "http://10.43.0.12:8080"}
    [instance] = directory.instances("app", "fn")
    assert (instance.url, instance.pid, instance.replica) == ("http://10.43.0.12:8080", None, "kube")
    path.unlink()
    assert directory.instances("app", "fn") == []
