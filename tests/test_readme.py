"""The README's shell blocks, replayed in order as a new user would type them.

``tether up`` runs in the background (what ``make up`` runs) on free, non-default ports,
in a fresh working directory with a fresh home (so nothing of this machine's config is
found), and the CLI must find it from there and from elsewhere. Every ```sh block then
runs, in README order, in one bash (variables carry over, as in one terminal) with
``set -eo pipefail``; the first failing block fails the test with its number and output.
A block opening with ``# not replayed: REASON`` is skipped (it needs root, Docker, a
cluster, or runs until stopped); one opening with ``# ... (tests/X.py runs this block as
written)`` is run by that test instead. ``API`` is set to the URL ``tether up`` printed,
as the README tells a user whose ``up`` took another port.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SKIP = re.compile(r"^# not replayed: (\S.*)$")
ELSEWHERE = re.compile(r"^# .*\((tests/\S+\.py) runs this block as written\)$")


def shell_blocks() -> list[str]:
    return re.findall(r"^```(?:sh|bash|shell)\n(.*?)^```", README.read_text(encoding="utf-8"),
                      re.DOTALL | re.MULTILINE)


def replayed() -> list[tuple[int, str]]:
    """(number, text) of the blocks the test runs; checks each skipped one says why."""
    chosen = []
    for number, block in enumerate(shell_blocks(), start=1):
        first = block.split("\n", 1)[0]
        if SKIP.match(first):
            continue
        elsewhere = ELSEWHERE.match(first)
        if elsewhere:
            assert (ROOT / elsewhere.group(1)).is_file(), f"block {number} names a missing test"
            continue
        chosen.append((number, block))
    return chosen


def test_every_skipped_block_gives_its_reason() -> None:
    blocks = shell_blocks()
    assert len(blocks) >= 6
    for block in blocks:
        first = block.split("\n", 1)[0]
        if first.startswith("# not replayed"):
            assert SKIP.match(first), f"a skipped block must say why: {first!r}"
    assert len(replayed()) >= 4


def script(blocks: list[tuple[int, str]]) -> str:
    parts = ["set -eo pipefail"]
    for number, block in blocks:
        parts.append(f"echo '::block {number}' >&2")
        parts.append(block)
    parts.append("echo '::done' >&2")
    return "\n".join(parts) + "\n"


def start_up(work: Path, env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    ports = [str(free_port()) for _ in range(3)]
    command = [sys.executable, "-m", "tether", "up", "--http-port", ports[0], "--mqtt-port",
               ports[1], "--mqtts-port", ports[2]]
    with log.open("wb") as sink:
        up = subprocess.Popen(command, cwd=work, env=env, stdout=sink, stderr=subprocess.STDOUT,
                              start_new_session=True)
    deadline = time.monotonic() + 60
    while "Ctrl-C stops everything." not in log.read_text():
        assert up.poll() is None, f"tether up exited:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"tether up did not start:\n{log.read_text()}"
        time.sleep(0.1)
    found = re.search(r"^API\s+(http://\S+)$", log.read_text(), re.MULTILINE)
    assert found is not None, log.read_text()
    return up, found.group(1)


def test_the_readme_runs_as_written(tmp_path: Path) -> None:
    work, home, elsewhere = tmp_path / "work", tmp_path / "home", tmp_path / "elsewhere"
    for directory in (work, home, elsewhere):
        directory.mkdir()
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("TETHER_", "XDG_")) or key == "TETHER_EDGE_FUNCTION_PROXY_PORT"}
    env.update({"HOME": str(home), "PATH": os.pathsep.join([str(Path(sys.executable).parent),
                                                             env.get("PATH", "")])})
    started = time.monotonic()
    up, api = start_up(work, env, tmp_path / "up.log")
    assert api not in ("http://127.0.0.1:9080",)  # the hints must work on other ports
    try:
        # the CLI finds this `tether up` from any directory, and the hints it printed work
        listed = subprocess.run(["tether", "get", "nodes"], cwd=elsewhere, env=env,
                                capture_output=True, text=True, timeout=60, check=False)
        assert listed.returncode == 0 and "local" in listed.stdout, listed.stderr
        printed = (tmp_path / "up.log").read_text()
        hints = [line.split(": ", 1)[1] for line in printed.splitlines()
                 if line.startswith(("Demo app 'demo' runs on it: ", "Try: "))]
        assert len(hints) == 2, printed
        for hint in hints:
            tried = subprocess.run(["bash", "-eo", "pipefail", "-c", hint], cwd=elsewhere, env=env,
                                   capture_output=True, text=True, timeout=60, check=False)
            assert tried.returncode == 0 and tried.stdout, f"{hint}: {tried.stderr}"
            assert "demo" in tried.stdout or '"reported"' in tried.stdout, tried.stdout
        blocks = replayed()
        ran = subprocess.run(["bash", "-c", script(blocks)], cwd=work, env={**env, "API": api},
                             capture_output=True, text=True, timeout=120, check=False,
                             start_new_session=True)
        reached = re.findall(r"^::(block \d+|done)$", ran.stderr, re.MULTILINE)
        assert ran.returncode == 0 and reached[-1:] == ["done"], (
            f"README {reached[-1] if reached else 'start'} failed (exit {ran.returncode}):\n"
            f"--- stdout\n{ran.stdout[-4000:]}\n--- stderr\n{ran.stderr[-4000:]}")
        log = work / "data" / "edge-local" / "apps" / "hello" / "logs" / "main-0.log"
        # the first run printed its mounted config (later blocks roll hello out again)
        assert log.read_text().splitlines()[0] == "hello"
        assert '{"sum":3,"node":"default/local"}' in ran.stdout.replace(" ", "")
        apps = subprocess.run(["tether", "get", "apps"], cwd=elsewhere, env=env,
                              capture_output=True, text=True, timeout=60, check=False)
        assert all(name in apps.stdout for name in ("demo", "hello", "calc")), apps.stdout
    finally:
        os.killpg(up.pid, signal.SIGINT)  # Ctrl-C: stops everything, the apps too
        try:
            up.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()
    print(f"README replayed in {time.monotonic() - started:.1f} s")
    left = [p.pid for p in psutil.process_iter(["cwd"])
            if (p.info.get("cwd") or "").startswith(str(work))]
    assert left == [], f"processes left running in {work}: {left}"
    assert not (home / ".local" / "state" / "tether" / "up.yaml").exists()  # forgotten on exit
    with pytest.raises(httpx.TransportError):
        httpx.get(api, timeout=2)


def test_what_the_readme_says_of_an_offline_node_is_what_the_api_does(tmp_path: Path) -> None:
    """README and /docs: an invocation relayed to a node the cloud shows offline is 503 at
    once, with the message, Retry-After and no wait for the relay's timeout."""
    from cloud_api.runtime import Cloud, bind_http
    from cloud_api.settings import CloudSettings
    from launcher.serving import BackgroundServer
    from tests.cloud_api.conftest import admin_token

    readme = " ".join(README.read_text(encoding="utf-8").split())
    assert "answered **503 at once**" in readme and "with `Retry-After`" in readme
    with Cloud(CloudSettings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'c.db'}")
               ) as cloud:
        cloud.create_node("x")
        server = BackgroundServer(cloud.app, bind_http("127.0.0.1", 0)).start()
        try:
            headers = {"Authorization": f"Bearer {admin_token(cloud)}"}
            # first, so the server's first-request work is not in the invocation's time
            spec = httpx.get(f"{server.url}/openapi.json", timeout=10).json()
            started = time.monotonic()
            answer = httpx.post(f"{server.url}/v1/namespaces/default/nodes/x/functions/calc/sum"
                                ":invoke", json={"a": 1}, headers=headers, timeout=10)
            took = time.monotonic() - started
        finally:
            server.stop()
    assert answer.status_code == 503 and "Retry-After" in answer.headers
    assert answer.json()["code"] == 503
    assert "node default/x is offline" in answer.json()["message"]
    assert "nothing was sent to it" in answer.json()["message"]
    assert took < 1.0  # not the 30 s relay timeout (measured well under 100 ms)
    invoke = spec["paths"]["/v1/namespaces/{namespace}/nodes/{node}/functions/{app}/{function}:invoke"]
    assert "offline" in invoke["post"]["responses"]["503"]["description"]
