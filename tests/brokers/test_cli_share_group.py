"""``tether cloud serve --share-group`` on a broker that grants ``$share/`` subscriptions and
delivers nothing through them (NATS 2.9): it exits with one clear line, not silently.

One broker is enough here: ``test_scenarios`` checks the verdict itself on every broker;
this proves the command acts on it. NATS starts in a fraction of a second."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from launcher.brokers import Capability, RunningBroker, broker_kind

pytestmark = pytest.mark.slow  # a `tether cloud serve` child process: ~5 s
NATS = broker_kind("nats")


@pytest.fixture(scope="module")
def nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBroker]:
    if (missing := NATS.missing()) is not None:
        pytest.skip(f"nats: {missing}")
    assert NATS.lacking(Capability.SHARED_SUBSCRIPTIONS) is not None
    with NATS.running(tmp_path_factory.mktemp("nats")) as running:
        yield running


def test_cloud_serve_refuses_a_share_group_the_broker_cannot_serve(
    nats: RunningBroker, tmp_path: Path
) -> None:
    env = {**os.environ, "TETHER_CLOUD_SHARE_PROBE_SECONDS": "1.5"}
    done = subprocess.run(
        [sys.executable, "-m", "tether", "cloud", "serve", "--share-group", "suite",
         "--mqtt-url", nats.url, "--data-dir", str(tmp_path / "cloud"), "--http-port", "0"],
        env=env, capture_output=True, timeout=60, check=False,
    )
    stderr = done.stderr.decode()
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 1, stderr[-2000:]
    assert len(errors) == 1 and "$share/" in errors[0], stderr[-2000:]
