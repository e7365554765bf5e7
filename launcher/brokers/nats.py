"""A private NATS server with its MQTT listener (NATS 2.9: MQTT needs JetStream and a
``server_name``), on free loopback ports, its JetStream store in the given directory.

It runs without authentication: NATS before 2.10 cannot ask the cloud about a client
(no auth callout), and without users configured it accepts any username and password.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from launcher.brokers.processes import free_port, start_process, stop_group, wait_listening

NATS_PACKAGE = "nats-server"


def nats_binary() -> str | None:
    """Path of nats-server (Debian puts it in /usr/sbin), or None."""
    found = shutil.which("nats-server") or "/usr/sbin/nats-server"
    return found if os.access(found, os.X_OK) else None


def nats_config(directory: Path, *, client_port: int, mqtt_port: int) -> str:
    store = json.dumps(str(directory / "jetstream"))
    return (
        f"server_name: tether-{os.urandom(3).hex()}\n"
        f"listen: 127.0.0.1:{client_port}\n"
        f"jetstream {{ store_dir: {store}, max_memory_store: 64MB, max_file_store: 256MB }}\n"
        f"mqtt {{ listen: 127.0.0.1:{mqtt_port} }}\n"
    )


@contextmanager
def running_nats(directory: Path, *, timeout: float = 20.0) -> Iterator[str]:
    """A nats-server with MQTT for the ``with`` block; yields its MQTT URL."""
    binary = nats_binary()
    if binary is None:
        raise FileNotFoundError(f"nats-server is not installed: apt-get install {NATS_PACKAGE}")
    directory.mkdir(parents=True, exist_ok=True)
    mqtt_port = free_port()
    config = directory / "nats.conf"
    config.write_text(nats_config(directory, client_port=free_port(), mqtt_port=mqtt_port))
    log = directory / "nats.log"
    process = start_process([binary, "-c", str(config)], log=log)
    wait_listening(process, mqtt_port, timeout=timeout, name="nats-server", log=log)
    try:
        yield f"mqtt://127.0.0.1:{mqtt_port}"
    finally:
        stop_group(process)
