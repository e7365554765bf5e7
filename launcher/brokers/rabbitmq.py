"""A private RabbitMQ with ``rabbitmq_mqtt``, on free loopback ports, its data in a directory.

Everything that could meet the machine's own RabbitMQ is its own: node name, AMQP and
distribution ports, the epmd port (an epmd of ours, started first and stopped last), the
Erlang cookie (``HOME``), the mnesia, log, config and plugins files. It starts through
``/usr/lib/rabbitmq/bin/rabbitmq-server``, because Debian's ``/usr/sbin`` wrapper drops
the environment when run as root.

The ``users`` given (the cloud's bridge) are loaded as definitions at boot, with every
permission on ``/``. With a ``webhook`` (the cloud's ``/v1/broker/rabbitmq`` URL, the
admin token as basic-auth password in it), ``rabbitmq_auth_backend_http`` asks the cloud
about every other client: its login, its subscription queues and each topic it publishes
or subscribes to; anonymous clients are refused. Without one, anonymous MQTT clients are
logged in as ``guest`` with every permission.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from launcher.brokers.processes import free_port, start_process, stop_group, wait_listening
from launcher.brokers.tls import TlsListener

RABBITMQ_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
RABBITMQ_PACKAGE = "rabbitmq-server"


def rabbitmq_missing() -> str | None:
    """Why a private RabbitMQ cannot start here, or None."""
    if not os.access(RABBITMQ_SERVER, os.X_OK):
        return f"{RABBITMQ_SERVER} is missing: apt-get install {RABBITMQ_PACKAGE}"
    if epmd_binary() is None:
        return "epmd (Erlang) is missing"
    return None


def epmd_binary() -> str | None:
    for candidate in [Path("/usr/bin/epmd"), *sorted(Path("/usr/lib/erlang").glob("erts-*/bin/epmd"))]:
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def password_hash(password: str) -> str:
    """RabbitMQ's ``rabbit_password_hashing_sha256``: base64(salt + sha256(salt + password))."""
    salt = os.urandom(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def definitions(users: Mapping[str, str], *, guest: bool = True) -> dict[str, object]:
    everyone = {**({"guest": "guest"} if guest else {}), **users}
    return {
        "users": [
            {"name": name, "password_hash": password_hash(password), "tags": "",
             "hashing_algorithm": "rabbit_password_hashing_sha256"}
            for name, password in everyone.items()
        ],
        "vhosts": [{"name": "/"}],
        "permissions": [
            {"user": name, "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}
            for name in everyone
        ],
    }


def webhook_config(webhook: str) -> str:
    """``rabbitmq.conf`` lines that make RabbitMQ ask the cloud at ``webhook`` (its
    ``/v1/broker/rabbitmq`` URL) about every user it does not know itself. No cache
    (``rabbitmq_auth_backend_cache``): a revoked node must be refused at once."""
    base = webhook.rstrip("/")
    return (
        "auth_backends.1 = internal\n"
        "auth_backends.2 = http\n"
        "auth_http.http_method = post\n"
        + "".join(f"auth_http.{check}_path = {base}/{check}\n"
                  for check in ("user", "vhost", "resource", "topic"))
    )


def tls_config(tls: TlsListener) -> str:
    """An MQTT listener over TLS that asks for a client certificate (not requiring one) and
    takes a verified certificate's CN as the username (``mqtt.ssl_cert_login``): such a
    client sends no username, and the webhook is asked about the CN without a password."""
    return (
        f"mqtt.listeners.ssl.default = 127.0.0.1:{tls.port}\n"
        f"ssl_options.cacertfile = {tls.cafile}\n"
        f"ssl_options.certfile = {tls.certfile}\n"
        f"ssl_options.keyfile = {tls.keyfile}\n"
        "ssl_options.verify = verify_peer\n"
        "ssl_options.fail_if_no_peer_cert = false\n"
        "mqtt.ssl_cert_login = true\n"
        "ssl_cert_login_from = common_name\n"
    )


def rabbitmq_config(directory: Path, *, mqtt_port: int, webhook: str | None = None,
                    tls: TlsListener | None = None) -> str:
    anonymous = (
        "mqtt.allow_anonymous = true\nmqtt.default_user = guest\nmqtt.default_pass = guest\n"
        if webhook is None else "mqtt.allow_anonymous = false\n" + webhook_config(webhook)
    )
    return (
        "listeners.tcp = none\n"
        "loopback_users = none\n"
        f"mqtt.listeners.tcp.default = 127.0.0.1:{mqtt_port}\n"
        + anonymous
        + (tls_config(tls) if tls is not None else "")
        + f"load_definitions = {directory / 'definitions.json'}\n"
        "log.console = false\n"
        "log.file.level = warning\n"
    )


@contextmanager
def running_rabbitmq(
    directory: Path, *, users: Mapping[str, str] = {}, webhook: str | None = None,
    tls: TlsListener | None = None, timeout: float = 60.0,
) -> Iterator[str]:
    """A RabbitMQ with MQTT for the ``with`` block; yields its MQTT URL."""
    missing = rabbitmq_missing()
    epmd = epmd_binary()
    if missing is not None or epmd is None:
        raise FileNotFoundError(missing)
    directory.mkdir(parents=True, exist_ok=True)
    mqtt_port, epmd_port = free_port(), free_port()
    (directory / "definitions.json").write_text(
        json.dumps(definitions(users, guest=webhook is None)))
    (directory / "rabbitmq.conf").write_text(
        rabbitmq_config(directory, mqtt_port=mqtt_port, webhook=webhook, tls=tls))
    plugins = "rabbitmq_mqtt" if webhook is None else "rabbitmq_mqtt,rabbitmq_auth_backend_http"
    (directory / "enabled_plugins").write_text(f"[{plugins}].\n")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(directory),  # the Erlang cookie goes here, not in the machine's home
        "LANG": "C.UTF-8",
        "RABBITMQ_NODENAME": f"tether-{os.urandom(4).hex()}@localhost",
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(free_port()),
        "RABBITMQ_DIST_PORT": str(free_port()),
        "ERL_EPMD_PORT": str(epmd_port),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
        "RABBITMQ_MNESIA_BASE": str(directory / "mnesia"),
        "RABBITMQ_LOG_BASE": str(directory / "log"),
        "RABBITMQ_CONFIG_FILE": str(directory / "rabbitmq.conf"),
        "RABBITMQ_ADVANCED_CONFIG_FILE": str(directory / "advanced.config"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(directory / "enabled_plugins"),
        "RABBITMQ_PID_FILE": str(directory / "rabbitmq.pid"),
    }
    log = directory / "rabbitmq.log"
    # Our own epmd, in the foreground, so RabbitMQ does not daemonize one we cannot stop.
    epmd_process = start_process([epmd, "-port", str(epmd_port), "-address", "127.0.0.1"], log=log)
    try:
        wait_listening(epmd_process, epmd_port, timeout=10, name="epmd", log=log)
        process = start_process([str(RABBITMQ_SERVER)], log=log, env=env)
        try:
            wait_listening(process, mqtt_port, timeout=timeout, name="rabbitmq-server", log=log)
            if tls is not None:
                wait_listening(process, tls.port, timeout=timeout, name="rabbitmq-server", log=log)
            yield f"mqtt://127.0.0.1:{mqtt_port}"
        finally:
            stop_group(process, grace=15)
    finally:
        stop_group(epmd_process)
