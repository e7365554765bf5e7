"""``tether broker``: run the embedded broker on its own; write a Mosquitto configuration.

Thin by design: parse flags into :class:`BrokerSettings` (the environment fills the
rest), start :class:`EmbeddedBroker`, print where it listens, wait for Ctrl-C or SIGTERM.
Passwords are always checked by the cloud (``--auth-url``): there is no flag for an
anonymous broker, so one cannot be started by accident. ``--tls-port`` with
``--certfile/--keyfile/--cafile`` adds the mTLS listener for nodes with certificates; the
cloud is asked about each certificate's serial too (revoked ones are refused).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from pydantic import ValidationError

from broker.embedded import EmbeddedBroker
from broker.errors import BrokerError, PortInUse
from broker.mosquitto import MosquittoConfig, render_acl, render_config
from broker.plugins import http_authenticator
from broker.settings import BrokerSettings

app = typer.Typer(
    help="The embedded MQTT broker (amqtt) with Tether's authentication and topic ACL.",
    no_args_is_help=True,
)

PROG = "tether broker"


def _env(text: str, name: str, default: str | None = None) -> str:
    shown = f", default {default}" if default is not None else ""
    return f"{text} (env TETHER_BROKER_{name}{shown})"


@app.callback()
def _group() -> None:
    """Keep ``serve`` a subcommand even while it is the only one."""


Host = Annotated[str | None, typer.Option(help=_env("Address to bind.", "HOST", "127.0.0.1"))]
Port = Annotated[int | None, typer.Option(help=_env("TCP port, 0 for any.", "PORT", "1883"))]
TopicRoot = Annotated[
    str | None, typer.Option(help=_env("Root of Tether's topics.", "TOPIC_ROOT", "tether/v1"))
]
AuthUrl = Annotated[
    str | None, typer.Option(help=_env("The cloud's POST /v1/broker/authenticate URL.", "AUTH_URL"))
]
AuthToken = Annotated[
    str | None, typer.Option(help=_env("Bearer token for --auth-url.", "AUTH_TOKEN"))
]
TlsPort = Annotated[
    int | None, typer.Option(help=_env("Port of the mTLS listener, 0 for any.", "TLS_PORT"))
]
CertFile = Annotated[
    Path | None, typer.Option(help=_env("The broker's server certificate (PEM).", "CERTFILE"))
]
KeyFile = Annotated[Path | None, typer.Option(help=_env("Its private key (PEM).", "KEYFILE"))]
CaFile = Annotated[
    Path | None, typer.Option(help=_env("The cloud's CA, for client certificates.", "CAFILE"))
]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Log every connection.")]


@app.command()
def serve(
    host: Host = None,
    port: Port = None,
    topic_root: TopicRoot = None,
    auth_url: AuthUrl = None,
    auth_token: AuthToken = None,
    tls_port: TlsPort = None,
    certfile: CertFile = None,
    keyfile: KeyFile = None,
    cafile: CaFile = None,
    verbose: Verbose = False,
) -> None:
    """Run the broker until Ctrl-C; clients authenticate against the cloud."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    given = {"host": host, "port": port, "topic_root": topic_root}
    given |= {"auth_url": auth_url, "auth_token": auth_token}
    given |= {"tls_port": tls_port, "certfile": certfile, "keyfile": keyfile, "cafile": cafile}
    try:
        settings = BrokerSettings(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "settings"
        _fail(f"invalid {where}: {error['msg']}", code=2)
    if settings.auth_url is None:
        _fail(
            "--auth-url is required (or TETHER_BROKER_AUTH_URL): "
            "the broker never runs without authentication",
            code=2,
        )
    if settings.auth_token is None:
        _fail("--auth-token is required with --auth-url (or TETHER_BROKER_AUTH_TOKEN)", code=2)
    try:
        asyncio.run(_serve(settings))
    except KeyboardInterrupt:
        pass
    except PortInUse as exc:
        _fail(str(PortInUse(exc.host, exc.port, hint="pass --port")), code=1)
    except BrokerError as exc:
        _fail(str(exc), code=1)


async def _serve(settings: BrokerSettings) -> None:
    assert settings.auth_url is not None
    authenticate = http_authenticator(settings.auth_url, settings.auth_token)
    embedded = EmbeddedBroker(
        settings, authenticate=authenticate, check_certificate=authenticate.check_certificate
    )
    await embedded.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows loops
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    tls = f" and {embedded.tls_url}" if settings.tls else ""
    typer.echo(
        f"{PROG}: serving {embedded.url}{tls} (topic root {settings.topic_root}; Ctrl-C to stop)"
    )
    try:
        await stop.wait()
    finally:
        await embedded.stop()


def _fail(message: str, *, code: int) -> NoReturn:
    typer.echo(f"{PROG}: {message}", err=True)
    raise typer.Exit(code)


@app.command("mosquitto-config")
def mosquitto_config(
    output: Annotated[Path, typer.Option(help="Directory for mosquitto.conf and tether.acl.")],
    cafile: Annotated[Path, typer.Option(help="The cloud's CA (DATA_DIR/ca/ca.crt).")],
    certfile: Annotated[Path, typer.Option(help="The broker's server certificate.")],
    keyfile: Annotated[Path, typer.Option(help="The broker's private key.")],
    tls_port: Annotated[int, typer.Option(help="Port of the mTLS listener.")] = 8883,
    tls_host: Annotated[str, typer.Option(help="Address of the mTLS listener.")] = "0.0.0.0",
    topic_root: Annotated[str, typer.Option(help="Root of Tether's topics.")] = "tether/v1",
    cloud_username: Annotated[str, typer.Option(help="The cloud bridge's user.")] = "tether-cloud",
    password_port: Annotated[
        int | None, typer.Option(help="A loopback listener for the bridge's password login.")
    ] = None,
    password_file: Annotated[
        Path | None, typer.Option(help="mosquitto_passwd file (with --password-port).")
    ] = None,
    user: Annotated[
        str | None, typer.Option(help="User mosquitto runs as if started as root.")
    ] = None,
) -> None:
    """Write a Mosquitto configuration: mTLS node identities and Tether's topic ACL."""
    acl_file = (output / "tether.acl").resolve()
    try:
        config = MosquittoConfig(
            acl_file=acl_file,
            cafile=cafile.resolve(),
            certfile=certfile.resolve(),
            keyfile=keyfile.resolve(),
            tls_port=tls_port,
            tls_host=tls_host,
            topic_root=topic_root,
            cloud_username=cloud_username,
            password_port=password_port,
            password_file=password_file.resolve() if password_file else None,
            user=user,
        )
    except ValueError as exc:
        _fail(str(exc), code=2)
    try:
        output.mkdir(parents=True, exist_ok=True)
        acl_file.write_text(render_acl(topic_root=topic_root, cloud_username=cloud_username))
        (output / "mosquitto.conf").write_text(render_config(config))
    except OSError as exc:
        _fail(f"cannot write to {output}: {exc.strerror or exc}", code=1)
    typer.echo(f"{PROG}: wrote {output / 'mosquitto.conf'} and {acl_file}")
