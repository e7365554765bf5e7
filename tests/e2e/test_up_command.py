"""``tether up`` as a user runs it: a child process that prints its URLs and stops on Ctrl-C."""

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

from tests.conftest import free_port


def test_up_serves_the_local_node_and_stops_cleanly(tmp_path: Path) -> None:
    http_port, mqtt_port, mqtts_port = free_port(), free_port(), free_port()
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "tether", "up", "--data-dir", str(tmp_path),
         "--http-port", str(http_port), "--mqtt-port", str(mqtt_port), "--mqtts-port", str(mqtts_port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "COLUMNS": "200"},
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(4)]
        assert lines[0].strip() == f"API   http://127.0.0.1:{http_port}", lines
        assert lines[1].strip() == f"MQTT  mqtt://127.0.0.1:{mqtt_port}"
        assert lines[2].startswith(f"MQTTS mqtts://127.0.0.1:{mqtts_port} (mTLS; CA {tmp_path}")
        token_path = Path(lines[3].split(" in ", 1)[1].strip())
        assert token_path == tmp_path / "admin.token"
        assert token_path.stat().st_mode & 0o777 == 0o600
        headers = {"Authorization": f"Bearer {token_path.read_text().strip()}"}
        url = f"http://127.0.0.1:{http_port}/v1/namespaces/default/nodes/local/shadow"
        reported_at = None
        with httpx.Client(headers=headers, timeout=5) as http:
            while time.monotonic() - started < 10:
                if http.get(url).json()["state"]["reported"].get("node"):
                    reported_at = time.monotonic() - started
                    break
                time.sleep(0.02)
        assert reported_at is not None, "the local node never reported its facts"
        print(f"reported.node visible {reported_at:.2f} s after `tether up` was launched")
        assert reported_at < 4.0  # DESIGN: within 2 s of start; slack for a loaded CI machine
        with httpx.Client(headers=headers, timeout=5) as http:
            def demo_running() -> bool:
                stats = http.get(url).json()["state"]["reported"].get("appstats", {})
                return stats.get("demo", {}).get("status") == "Running"

            deadline = time.monotonic() + 20
            while not demo_running():
                assert time.monotonic() < deadline, "the demo app never ran on the local node"
                time.sleep(0.1)
        print(f"demo app Running {time.monotonic() - started:.2f} s after launch")
        children = psutil.Process(process.pid).children(recursive=True)
        assert any("edge" in " ".join(c.cmdline()) for c in children), "no edge child process"

        process.send_signal(signal.SIGINT)
        assert process.wait(15) == 0
        assert not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def test_an_explicit_port_in_use_is_a_one_line_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "tether", "up", "--data-dir", str(tmp_path), "--http-port", str(port), "--mqtt-port", str(free_port()),
             "--mqtts-port", str(free_port()), "--no-edge"],
            capture_output=True, text=True, timeout=30, check=False,
        )
    assert result.returncode == 2
    output = (result.stdout + result.stderr).strip()
    assert re.fullmatch(rf"error: port {port} on 127\.0\.0\.1 is already in use: choose another with --http-port", output), output
