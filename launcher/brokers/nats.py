"""A private NATS server with its MQTT listener (NATS 2.9: MQTT needs JetStream and a
``server_name``), on free loopback ports, its JetStream store in the given directory.

Without ``users`` it runs without authentication: it accepts any username and password.
With them, it admits only the users of ``tether-users.conf``, which the configuration
``include``s: at first the ``users`` given (the cloud's bridge, every permission), then
whatever ``tether broker nats-config`` writes from the cloud (``broker.nats_auth``):
``users_changed`` does one such sync against the ``cloud`` URL and waits for NATS to
reload, as the command's ``--interval`` loop would within its interval.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import bcrypt

from broker.nats_auth import reload_nats, render, sync_once
from launcher.brokers.processes import free_port, start_process, stop_group, wait_listening
from launcher.brokers.tls import TlsListener
from schemas.topics import DEFAULT_ROOT

NATS_PACKAGE = "nats-server"
USERS_FILE = "tether-users.conf"
RELOADED = "Reloaded server configuration"


def nats_binary() -> str | None:
    """Path of nats-server (Debian puts it in /usr/sbin), or None."""
    found = shutil.which("nats-server") or "/usr/sbin/nats-server"
    return found if os.access(found, os.X_OK) else None


def nats_config(directory: Path, *, client_port: int, mqtt_port: int, users: bool = False,
                tls: TlsListener | None = None) -> str:
    """With ``tls``, the one MQTT listener is TLS on ``tls.port`` and maps each client's
    verified certificate to the user named by its subject (``verify_and_map``)."""
    store = json.dumps(str(directory / "jetstream"))
    listener = f"mqtt {{ listen: 127.0.0.1:{mqtt_port} }}\n"
    if tls is not None:
        listener = (
            f"mqtt {{\n  listen: 127.0.0.1:{tls.port}\n  tls {{\n"
            f"    cert_file: {json.dumps(str(tls.certfile))}\n"
            f"    key_file: {json.dumps(str(tls.keyfile))}\n"
            f"    ca_file: {json.dumps(str(tls.cafile))}\n"
            "    verify_and_map: true\n  }\n}\n"
        )
    auth = (f"include {USERS_FILE}\npid_file: {json.dumps(str(directory / 'nats.pid'))}\n"
            if users else "")
    return (
        f"server_name: tether-{os.urandom(3).hex()}\n"
        f"listen: 127.0.0.1:{client_port}\n"
        f"jetstream {{ store_dir: {store}, max_memory_store: 64MB, max_file_store: 256MB }}\n"
        + listener
        + auth
    )


def first_users(users: Mapping[str, str], topic_root: str, *, certificate: bool = False) -> str:
    """The users file before the first sync: the one user given, with every permission
    (``certificate``: by its certificate's subject, ``CN=USER``)."""
    if len(users) != 1:
        raise ValueError("a private NATS with users takes exactly one: the cloud's bridge")
    ((username, password),) = users.items()
    digest = bcrypt.hashpw(password.encode(), bcrypt.gensalt(6)).decode()
    return render({"topicRoot": topic_root, "users": [],
                   "bridge": {"username": username, "passwordHash": digest}},
                  bridge_certificate=certificate)


@dataclass(frozen=True)
class PrivateNats:
    url: str
    users_changed: Callable[..., None] | None


@contextmanager
def running_nats(
    directory: Path, *, users: Mapping[str, str] = {}, cloud: str | None = None,
    topic_root: str = DEFAULT_ROOT, tls: TlsListener | None = None, timeout: float = 20.0,
) -> Iterator[PrivateNats]:
    """A nats-server with MQTT for the ``with`` block. ``cloud``: the cloud's base URL with
    an admin token as the basic-auth password, for ``users_changed``. ``tls``: its MQTT
    listener is that one (every client presents a certificate; the bridge's CN is its
    username)."""
    binary = nats_binary()
    if binary is None:
        raise FileNotFoundError(f"nats-server is not installed: apt-get install {NATS_PACKAGE}")
    directory.mkdir(parents=True, exist_ok=True)
    mqtt_port = tls.port if tls is not None else free_port()
    config = directory / "nats.conf"
    if users:
        (directory / USERS_FILE).write_text(
            first_users(users, topic_root, certificate=tls is not None))
    config.write_text(nats_config(directory, client_port=free_port(), mqtt_port=mqtt_port,
                                  users=bool(users), tls=tls))
    log = directory / "nats.log"
    process = start_process([binary, "-c", str(config)], log=log)
    wait_listening(process, mqtt_port, timeout=timeout, name="nats-server", log=log)
    changed = None
    if users and cloud is not None:
        changed = _syncer(cloud, directory, log, bridge_certificate=tls is not None)
    try:
        yield PrivateNats(tls.url if tls is not None else f"mqtt://127.0.0.1:{mqtt_port}",
                          changed)
    finally:
        stop_group(process)


def _syncer(
    cloud: str, directory: Path, log: Path, *, bridge_certificate: bool = False
) -> Callable[..., None]:
    parts = urlsplit(cloud)
    token = parts.password or ""
    server = urlunsplit((parts.scheme, f"{parts.hostname}:{parts.port}", "", "", ""))
    users_file, pid_file = directory / USERS_FILE, directory / "nats.pid"

    def users_changed(edit: Callable[[str], str] | None = None) -> None:
        """Sync, then (``edit``: a test breaking a permission on purpose) rewrite the file
        with ``edit(text)``; reload NATS and wait until it has."""
        before = log.read_text(errors="replace").count(RELOADED)
        sync_once(server, token, users_file, bridge_certificate=bridge_certificate)
        if edit is not None:
            users_file.write_text(edit(users_file.read_text()))
        reload_nats(pid_file)
        deadline = time.monotonic() + 10
        while log.read_text(errors="replace").count(RELOADED) <= before:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nats-server did not reload {USERS_FILE}: see {log}")
            time.sleep(0.02)

    return users_changed
