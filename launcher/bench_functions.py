"""``tether bench functions``: invocations per second and latency through the function proxy.

It runs what a node runs: ``replicas`` real runtime processes of a trivial function
(``handle(event, ctx) -> event``, started with the same ``runtime_command`` as the native
backend) and a ``FunctionProxy`` on a free loopback port; ``concurrency`` client threads
then POST ``count`` invocations over keep-alive connections. The latency of one
invocation is client send to client receipt: proxy, instance choice, runtime and back.

``start_runtime``/``stop_runtime`` are reused by the function tests.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_runtime.functions.directory import FunctionDirectory, runtime_command
from edge_runtime.functions.proxy import FunctionProxy
from launcher.bench import percentile

ECHO = "def handle(event, ctx):\n    return event\n"


def start_runtime(
    code_dir: Path,
    handler: str,
    announce: Path,
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 15.0,
) -> subprocess.Popen[bytes]:
    """Start a runtime process and wait until it has announced itself (or has exited)."""
    process = subprocess.Popen(
        runtime_command(code_dir=code_dir, handler=handler, announce=announce),
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return process  # failed to start: the caller reads returncode and stderr
        try:
            if json.loads(announce.read_bytes()).get("pid") == process.pid:
                return process
        except (OSError, ValueError):
            pass
        time.sleep(0.01)
    stop_runtime(process)
    raise TimeoutError(f"the runtime {handler} did not announce itself within {timeout} s")


def stop_runtime(process: subprocess.Popen[bytes], *, timeout: float = 5.0) -> None:
    """SIGTERM, then SIGKILL if it lingers; always reaped (no zombie keeps its pid alive)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)
    if process.stderr is not None:
        process.stderr.close()


@dataclass(frozen=True)
class FunctionBenchResult:
    count: int
    concurrency: int
    replicas: int
    seconds: float
    samples_ms: list[float]
    errors: int

    def row(self) -> dict[str, Any]:
        samples = self.samples_ms
        return {
            "invocations": self.count,
            "concurrency": self.concurrency,
            "replicas": self.replicas,
            "errors": self.errors,
            "per_second": round(self.count / self.seconds, 1),
            "p50_ms": round(percentile(samples, 50), 3),
            "p99_ms": round(percentile(samples, 99), 3),
            "max_ms": round(max(samples), 3),
        }


def _client(url: str, jobs: list[int], samples: list[float], errors: list[int]) -> None:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    body = json.dumps({"a": 1, "b": 2}).encode()
    headers = {"Content-Type": "application/json"}
    try:
        for _ in jobs:
            started = time.perf_counter()
            connection.request("POST", "/bench/echo", body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            samples.append((time.perf_counter() - started) * 1000)
            if response.status != 200:
                errors.append(response.status)
    finally:
        connection.close()


def _drive(url: str, count: int, concurrency: int) -> tuple[float, list[float], int]:
    samples: list[float] = []
    errors: list[int] = []
    share = count // concurrency
    shares = [list(range(share + (i < count % concurrency))) for i in range(concurrency)]
    threads = [
        threading.Thread(target=_client, args=(url, share, samples, errors), daemon=True)
        for share in shares
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, samples, len(errors)


def run_function_bench(
    *,
    count: int = 2000,
    concurrency: int = 4,
    replicas: int = 2,
    warmup: int = 100,
    data_dir: Path | None = None,
) -> FunctionBenchResult:
    """Invoke a trivial function ``count`` times through the proxy; latencies in ms."""
    if count < 1 or concurrency < 1 or replicas < 1:
        raise ValueError("count, concurrency and replicas must be at least 1")
    with tempfile.TemporaryDirectory(prefix="tether-bench-fn-") as scratch:
        root = Path(data_dir or scratch)
        code = root / "code"
        code.mkdir(parents=True, exist_ok=True)
        (code / "bench.py").write_text(ECHO, encoding="utf-8")
        directory = FunctionDirectory(root / "functions")
        processes = []
        try:
            for replica in range(replicas):
                announce = directory.announce_path("bench", "echo", replica)
                processes.append(start_runtime(code, "bench.handle", announce))
            with FunctionProxy(directory, host="127.0.0.1", port=0) as proxy:
                if warmup:
                    _drive(proxy.url, warmup, concurrency)
                seconds, samples, errors = _drive(proxy.url, count, concurrency)
        finally:
            for process in processes:
                stop_runtime(process)
    return FunctionBenchResult(count, concurrency, replicas, seconds, samples, errors)


if __name__ == "__main__":
    print(json.dumps(run_function_bench().row()), file=sys.stdout)
