"""``tether broker``: run the embedded broker on its own; configure and feed a Mosquitto.

Thin by design: parse flags into :class:`BrokerSettings` (the environment fills the
rest), start :class:`EmbeddedBroker`, print where it listens, wait for Ctrl-C or SIGTERM.
Passwords are always checked by the cloud (``--auth-url``): there is no flag for an
anonymous broker, so one cannot be started by accident. ``--tls-port`` with
``--certfile/--keyfile/--cafile`` adds the mTLS listener for nodes with certificates; the
cloud is asked about each certificate's serial too (revoked ones are refused).

For Mosquitto, ``mosquitto-config`` writes its configuration and ACL, with the TLS files
where Mosquitto's user can read them (``broker.mosquitto_files``), and ``crl-sync`` keeps
its ``crlfile`` equal to the cloud's CRL (``broker.crl_sync``), reloading it. For NATS,
``nats-config`` keeps its users and permissions equal to the cloud's nodes
(``broker.nats_auth``), reloading it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
import threading
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from cryptography import x509
from pydantic import ValidationError

from broker.crl_sync import CloudUnreachable, CrlSyncError, SyncOutcome, sync_once, trust
from broker.embedded import EmbeddedBroker
from broker.errors import BrokerError, PortInUse
from broker.mosquitto import MosquittoConfig
from broker.mosquitto_files import install
from broker.nats_auth import CloudUnreachable as NatsCloudUnreachable
from broker.nats_auth import NatsConfigError, NatsOutcome
from broker.nats_auth import sync_once as sync_nats_users
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
    given: dict[str, Any] = {"host": host, "port": port, "topic_root": topic_root}
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


def _cloud_access(server: str | None, token: str | None,
                  cafile: Path | None) -> tuple[str, str, ssl.SSLContext | bool]:
    """The cloud's URL, its admin token and how to verify it, or a one-line exit 2."""
    if server is None:
        _fail("--server is required (or TETHER_BROKER_SERVER): the cloud's base URL", code=2)
    if token is None:
        _fail("--token is required (or TETHER_BROKER_AUTH_TOKEN): the cloud's admin token", code=2)
    verify: ssl.SSLContext | bool = True
    if cafile is not None:
        try:
            verify = trust(cafile)
        except CrlSyncError as exc:
            _fail(str(exc), code=2)
    return server, token, verify


@app.command("mosquitto-config")
def mosquitto_config(
    output: Annotated[
        Path, typer.Option(help="Directory for mosquitto.conf, tether.acl and copies of the TLS files.")
    ],
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
    password_host: Annotated[
        str, typer.Option(help="Address of the password listener: loopback unless the cloud "
                               "runs elsewhere (a Kubernetes Service, say).")
    ] = "127.0.0.1",
    user: Annotated[
        str | None,
        typer.Option(help="The user Mosquitto runs as (it drops to it when started as root); "
                          "the files are made readable for it.  [default: mosquitto]"),
    ] = None,
    crl_file: Annotated[
        Path | None,
        typer.Option(help="The cloud's CRL (PEM) for the TLS listener, kept by `crl-sync`."),
    ] = None,
    pid_file: Annotated[
        Path | None,
        typer.Option(help="Where Mosquitto writes its pid, for `crl-sync --mosquitto-pid-file`."),
    ] = None,
) -> None:
    """Write a Mosquitto configuration: mTLS node identities and Tether's topic ACL.

    Mosquitto 2.x reads its certificates as its own user (``mosquitto``, or --user), even
    when started as root, and the cloud keeps them in 0700 directories. So the CA,
    certificate and key are copied into --output (0644, 0644, and 0640 with the group of
    that user: run this as root), and the CRL, password and pid files, which are kept up to
    date where they are, are checked to be within that user's reach. Run it again when the
    broker's certificate is renewed. See ``broker.mosquitto_files``.
    """
    try:
        sources = MosquittoConfig(
            acl_file=output / "tether.acl",
            cafile=cafile,
            certfile=certfile,
            keyfile=keyfile,
            tls_port=tls_port,
            tls_host=tls_host,
            topic_root=topic_root,
            cloud_username=cloud_username,
            password_port=password_port,
            password_file=password_file.resolve() if password_file else None,
            password_host=password_host,
            user=user,
            crl_file=crl_file.resolve() if crl_file else None,
            pid_file=pid_file.resolve() if pid_file else None,
        )
    except ValueError as exc:
        _fail(str(exc), code=2)
    try:
        installed = install(sources, output)
    except BrokerError as exc:
        _fail(str(exc), code=1)
    for note in installed.notes:
        typer.echo(f"{PROG}: note: {note}", err=True)
    typer.echo(f"{PROG}: wrote {installed.path} and {installed.config.acl_file}, "
               f"with copies of the TLS files beside them")


@app.command("crl-sync")
def crl_sync(
    out: Annotated[Path, typer.Option(help="The CRL file Mosquitto reads (its `crlfile`).")],
    server: Annotated[
        str | None,
        typer.Option(envvar="TETHER_BROKER_SERVER", help="The cloud's base URL."),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="TETHER_BROKER_AUTH_TOKEN", show_default=False,
            help="The cloud's admin token.",
        ),
    ] = None,
    interval: Annotated[
        float, typer.Option(min=0.1, help="Seconds between fetches (ignored with --once).")
    ] = 60.0,
    once: Annotated[bool, typer.Option("--once", help="Fetch once, then exit.")] = False,
    mosquitto_pid_file: Annotated[
        Path | None,
        typer.Option(help="Mosquitto's pid file: SIGHUP it when the CRL changed."),
    ] = None,
    cafile: Annotated[
        Path | None,
        typer.Option(help="The cloud's CA: refuse a CRL it did not sign (it locks out all "
                          "nodes), and trust an API certificate it issued."),
    ] = None,
) -> None:
    """Keep Mosquitto's CRL file equal to the cloud's; SIGHUP Mosquitto when it changes.

    Mosquitto 2.x re-reads its crlfile on SIGHUP (new connections only; the cloud cuts
    open ones off itself).
    It will not start without the file: run with --once before starting it.
    """
    server, token, verify = _cloud_access(server, token, cafile)
    issuer = _load_issuer(cafile) if cafile is not None else None
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        _sync_until_stopped(
            server, token, out, pid_file=mosquitto_pid_file, issuer=issuer, verify=verify,
            interval=None if once else interval, stop=stop,
        )
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


def _sync_until_stopped(
    server: str,
    token: str,
    out: Path,
    *,
    pid_file: Path | None,
    issuer: x509.Certificate | None,
    verify: ssl.SSLContext | bool,
    interval: float | None,
    stop: threading.Event,
) -> None:
    """One sync (``interval`` None) or one every ``interval`` seconds until ``stop``."""
    while True:
        try:
            outcome = sync_once(server, token, out, pid_file=pid_file, issuer=issuer,
                                verify=verify)
        except CloudUnreachable as exc:
            if interval is None:
                _fail(str(exc), code=1)
            typer.echo(f"{PROG}: {exc}; keeping {out}, retrying in {interval:g} s", err=True)
        except CrlSyncError as exc:
            _fail(str(exc), code=1)
        else:
            _render_sync(outcome, out, quiet=interval is not None)
        if interval is None or stop.wait(interval):
            return


def _load_issuer(cafile: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(cafile.read_bytes())
    except (OSError, ValueError):
        _fail(f"cannot read a PEM certificate from {cafile}: check --cafile", code=2)


def _render_sync(outcome: SyncOutcome, out: Path, *, quiet: bool) -> None:
    if not outcome.written:
        if not quiet:
            typer.echo(f"{PROG}: {out} is current ({outcome.revoked} revoked)")
        return
    reloaded = f"; reloaded mosquitto (pid {outcome.reloaded_pid})" if outcome.reloaded_pid else ""
    typer.echo(f"{PROG}: wrote {out} ({outcome.revoked} revoked){reloaded}")
    if outcome.note:
        typer.echo(f"{PROG}: {outcome.note}", err=True)


@app.command("nats-config")
def nats_config(
    out: Annotated[Path, typer.Option(
        help="The users file the NATS configuration includes (`include tether-users.conf` "
             "at its top level); mode 0600.")],
    server: Annotated[
        str | None, typer.Option(envvar="TETHER_BROKER_SERVER", help="The cloud's base URL.")
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(envvar="TETHER_BROKER_AUTH_TOKEN", show_default=False,
                     help="The cloud's admin token."),
    ] = None,
    interval: Annotated[
        float, typer.Option(min=0.1, help="Seconds between fetches (ignored with --once).")
    ] = 30.0,
    once: Annotated[bool, typer.Option("--once", help="Fetch once, then exit.")] = False,
    nats_pid_file: Annotated[
        Path | None,
        typer.Option(help="The NATS server's `pid_file`: SIGHUP it (a config reload) when "
                          "the users changed."),
    ] = None,
    cafile: Annotated[
        Path | None, typer.Option(help="The cloud's CA, to trust an API certificate it issued."),
    ] = None,
    bridge_certificate: Annotated[
        bool, typer.Option("--bridge-certificate",
                           help="The bridge logs in with a client certificate (CN = its user): "
                                "for an MQTT listener with verify_and_map."),
    ] = False,
) -> None:
    """Write NATS's users and permissions from the cloud's nodes; rewrite and reload on change.

    NATS before 2.10 cannot ask the cloud about a client, so it is told: the bridge and
    every node, by bcrypt hash (never a password) or by certificate subject for
    `verify_and_map`, each node confined to its own topics. A revoked node drops out of
    the file at the next fetch; NATS drops its connection at the reload.
    """
    server, token, verify = _cloud_access(server, token, cafile)
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while True:
            try:
                outcome = sync_nats_users(server, token, out, pid_file=nats_pid_file,
                                          verify=verify, bridge_certificate=bridge_certificate)
            except NatsConfigError as exc:
                if once or not isinstance(exc, NatsCloudUnreachable):
                    _fail(str(exc), code=1)
                typer.echo(f"{PROG}: {exc}; keeping {out}, retrying in {interval:g} s", err=True)
            else:
                _render_nats(outcome, out, quiet=not once)
            if once or stop.wait(interval):
                return
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


def _render_nats(outcome: NatsOutcome, out: Path, *, quiet: bool) -> None:
    if outcome.written:
        reloaded = f"; reloaded nats-server (pid {outcome.reloaded_pid})" if outcome.reloaded_pid else ""
        typer.echo(f"{PROG}: wrote {out} ({outcome.users} nodes){reloaded}")
    elif not quiet:
        typer.echo(f"{PROG}: {out} is current ({outcome.users} nodes)")
    if outcome.needs_activation and (outcome.written or not quiet):
        typer.echo(f"{PROG}: note: {len(outcome.needs_activation)} nodes have a password from "
                   "before bcrypt hashes were kept and cannot log in to NATS: activate them "
                   f"again ({', '.join(outcome.needs_activation[:5])}...)", err=True)
