"""Real runtime processes behind a real proxy on a loopback port 0 (what a node runs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from edge_runtime.functions.directory import FunctionDirectory, write_announcement
from edge_runtime.functions.errors import ProxyError
from edge_runtime.functions.proxy import FunctionProxy
from launcher.bench_functions import start_runtime, stop_runtime
from tests.conftest import free_port
from tests.e2e.conftest import wait_until

CODE = {
    "calc.py": """
        import os, time

        def handle(event, ctx):
            return {"sum": event["a"] + event["b"]}

        def handle_v2(event, ctx):
            return {"sum": event["a"] + event["b"], "version": 2}

        def whoami(event, ctx):
            return {"pid": os.getpid(), "invoke": ctx.invoke_id, "app": ctx.app,
                    "function": ctx.function, "node": ctx.node}

        def raw(event, ctx):
            return b"\\x00raw" + (event if isinstance(event, bytes) else b"")

        def boom(event, ctx):
            raise ValueError("no sum today")

        def hang(event, ctx):
            time.sleep(30)

        def unserialisable(event, ctx):
            return {"when": object()}
    """,
    "broken.py": "import does_not_exist\n",
}
Start = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def code_dir(tmp_path: Path) -> Path:
    code = tmp_path / "code"
    code.mkdir()
    for name, source in CODE.items():
        (code / name).write_text(textwrap.dedent(source), encoding="utf-8")
    return code


@pytest.fixture
def directory(tmp_path: Path) -> FunctionDirectory:
    return FunctionDirectory(tmp_path / "functions")


@pytest.fixture
def start(code_dir: Path, directory: FunctionDirectory) -> Iterator[Start]:
    started: list[subprocess.Popen[bytes]] = []

    def run(handler: str, *, app: str = "calc", function: str = "add", replica: int = 0) -> subprocess.Popen[bytes]:
        announce = directory.announce_path(app, function, replica)
        process = start_runtime(code_dir, handler, announce)
        started.append(process)
        return process

    yield run
    for process in started:
        stop_runtime(process)


@pytest.fixture
def proxy(directory: FunctionDirectory) -> Iterator[httpx.Client]:
    with (
        FunctionProxy(directory, host="127.0.0.1", port=0, timeout=5.0, node="edge-1") as running,
        httpx.Client(base_url=running.url, timeout=10) as client,
    ):
        yield client


def test_invoke_update_and_remove(start: Start, proxy: httpx.Client, directory: FunctionDirectory) -> None:
    v1 = start("calc.handle")
    response = proxy.post("/calc/add", json={"a": 2, "b": 3})
    assert response.status_code == 200 and response.json() == {"sum": 5}
    assert response.headers["content-type"] == "application/json"
    assert len(response.headers["x-tether-invoke-id"]) == 32  # generated
    # a new version: the backend starts a new runtime on the same replica, then stops the old
    start("calc.handle_v2")
    stop_runtime(v1)
    assert proxy.post("/calc/add", json={"a": 2, "b": 3}).json() == {"sum": 5, "version": 2}
    # removed: the runtime stops and withdraws its announcement
    directory.announce_path("calc", "add", 0).unlink()
    gone = proxy.post("/calc/add", json={"a": 2, "b": 3})
    assert gone.status_code == 404 and gone.json()["code"] == 404


def test_a_dead_runtime_is_404_even_if_its_file_stays(start: Start, proxy: httpx.Client, directory: FunctionDirectory) -> None:
    process = start("calc.handle")
    announce = directory.announce_path("calc", "add", 0)
    saved = announce.read_bytes()
    process.kill()
    process.wait()
    announce.write_bytes(saved)  # as if the process crashed without withdrawing
    assert proxy.post("/calc/add", json={"a": 1, "b": 1}).status_code == 404


@pytest.mark.parametrize(
    ("handler", "headers", "code", "error_type"),
    [
        ("calc.boom", {}, 502, "ValueError"),
        ("calc.unserialisable", {}, 502, "TypeError"),
        ("calc.hang", {"X-Tether-Timeout": "0.3"}, 504, None),
    ],
)
def test_failures_and_the_proxy_stays_up(
    start: Start, proxy: httpx.Client, handler: str, headers: dict[str, str], code: int, error_type: str | None
) -> None:
    start(handler, function="bad")
    start("calc.handle")
    response = proxy.post("/calc/bad", json={}, headers=headers)
    assert response.status_code == code
    body = response.json()
    assert body["code"] == code and body["message"]
    assert (body.get("error") or {}).get("type") == error_type
    assert proxy.post("/calc/add", json={"a": 1, "b": 2}).json() == {"sum": 3}


def test_context_headers_and_bytes(start: Start, proxy: httpx.Client) -> None:
    start("calc.whoami", function="who")
    start("calc.raw", function="raw")
    response = proxy.post("/calc/who", json=None, headers={"X-Tether-Invoke-Id": "inv-1"})
    assert response.headers["x-tether-invoke-id"] == "inv-1"
    assert response.json() | {"pid": 0} == {"pid": 0, "invoke": "inv-1", "app": "calc", "function": "who", "node": "edge-1"}
    binary = proxy.post("/calc/raw", content=b"\xff\xfe", headers={"Content-Type": "application/octet-stream"})
    assert binary.headers["content-type"] == "application/octet-stream"
    assert binary.content == b"\x00raw\xff\xfe"


def test_round_robin_over_replicas_skipping_dead_ones(
    start: Start, proxy: httpx.Client, directory: FunctionDirectory
) -> None:
    processes = {p.pid: p for p in (start("calc.whoami", function="who", replica=r) for r in range(3))}
    seen = [proxy.post("/calc/who").json()["pid"] for _ in range(6)]
    assert sorted(seen[:3]) == sorted(processes) and seen[:3] == seen[3:]  # strict rotation
    victim = processes[seen[0]]
    victim.kill()
    victim.wait()  # reaped, as the backend does: its pid is gone
    assert {proxy.post("/calc/who").json()["pid"] for _ in range(6)} == set(processes) - {victim.pid}
    # an instance that is alive but refuses connections (a pid reused, a port closed) is skipped
    refusing = directory.announce_path("calc", "who", "0a")
    write_announcement(refusing, url=f"http://127.0.0.1:{free_port()}", pid=os.getpid())
    assert all(proxy.post("/calc/who").status_code == 200 for _ in range(6))


def test_every_instance_refusing_is_502(proxy: httpx.Client, directory: FunctionDirectory) -> None:
    write_announcement(directory.announce_path("calc", "add", 0), url=f"http://127.0.0.1:{free_port()}", pid=os.getpid())
    response = proxy.post("/calc/add", json={})
    assert response.status_code == 502 and "refused" in response.json()["message"]


def test_proxy_refusals(start: Start, proxy: httpx.Client) -> None:
    start("calc.handle")
    assert proxy.post("/calc/missing").status_code == 404
    assert proxy.post("/only-one-level").status_code == 404
    assert proxy.post("/calc/add", headers={"X-Tether-Timeout": "soon"}).status_code == 400
    assert proxy.post("/calc/add", headers={"X-Tether-Invoke-Id": "x" * 65}).status_code == 400
    assert proxy.post("/calc/add", content=b"x" * (1024 * 1024 + 1)).status_code == 413
    assert proxy.get("/healthz").json() == {"status": "ok"}
    assert proxy.get("/calc/add").status_code == 405
    assert proxy.post("/calc/add", json={"a": 1, "b": 1}).json() == {"sum": 2}


def test_an_import_error_ends_the_runtime_with_one_line(code_dir: Path, tmp_path: Path) -> None:
    process = start_runtime(code_dir, "broken.handle", tmp_path / "0.json")
    assert process.wait(10) == 2
    assert process.stderr is not None
    lines = process.stderr.read().decode().strip().splitlines()
    assert len(lines) == 1 and "ModuleNotFoundError" in lines[0] and "does_not_exist" in lines[0]
    assert not (tmp_path / "0.json").exists()
    stop_runtime(process)


def test_sigterm_withdraws_the_announcement(start: Start, directory: FunctionDirectory) -> None:
    process = start("calc.handle")
    stop_runtime(process)
    assert process.returncode == 0
    assert not directory.announce_path("calc", "add", 0).exists()


def test_a_port_in_use_is_one_line(directory: FunctionDirectory) -> None:
    with FunctionProxy(directory, port=0) as first:
        port = int(first.url.rsplit(":", 1)[1])
        with pytest.raises(ProxyError, match="cannot listen"):
            FunctionProxy(directory, port=port).start()


def test_the_runtime_takes_its_handler_and_code_from_the_environment_and_answers_healthz(
    code_dir: Path, tmp_path: Path
) -> None:
    """How a kube pod could run it, and what its readiness probe asks."""
    announce = tmp_path / "env.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "edge_runtime.functions.runtime", "--port", "0",
         "--announce", str(announce)],
        env={**os.environ, "TETHER_FUNCTION_HANDLER": "calc.handle",
             "TETHER_FUNCTION_CODE_DIR": str(code_dir)},
        stderr=subprocess.PIPE,
    )
    try:
        wait_until(announce.exists, timeout=15, what="the runtime to announce itself")
        url = json.loads(announce.read_text())["url"]
        with httpx.Client(base_url=url, timeout=5) as client:
            assert client.get("/healthz").json() == {"status": "ok"}
            assert client.get("/").status_code == 404
            assert client.post("/", json={"a": 1, "b": 2}).json() == {"sum": 3}
    finally:
        stop_runtime(process)


def test_the_runtime_without_a_handler_says_what_to_pass() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_FUNCTION_")}
    done = subprocess.run([sys.executable, "-m", "edge_runtime.functions.runtime"], env=env,
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2 and "--code-dir" in done.stderr and "--handler" in done.stderr
