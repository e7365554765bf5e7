"""``tether cloud ...``: the cloud's commands (the root ``tether.py`` mounts ``app``).

Thin, as every CLI here: parse flags into ``CloudSettings``, call ``runtime``, print. Any
``CloudError`` (a port in use, an unreachable database) is one line on stderr and exit 1.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from cloud_api.errors import CloudError
from cloud_api.runtime import Cloud, bind_http, freeze_startup_heap, serve_http
from cloud_api.security.server_certificates import issue_server_files, load_authority
from cloud_api.settings import CloudSettings

app = typer.Typer(help="The cloud: REST API and MQTT bridge.", no_args_is_help=True)

# ``--embedded-broker``: cloud_api may not import the broker (DESIGN §1), so the composition
# root (launcher.cloud) installs a factory here:
# (host, port, topic_root, authenticate) -> context manager yielding the broker's MQTT URL.
EmbeddedBrokerFactory = Callable[
    [str, int, str, Callable[[str | None, str | None], bool]], AbstractContextManager[str]
]
embedded_broker_factory: EmbeddedBrokerFactory | None = None
console = Console(soft_wrap=True, highlight=False)  # paths and URLs on one line each, as typed


@app.callback()
def cloud() -> None:
    """The cloud: REST API and MQTT bridge."""


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` on stderr; raise the returned Exit."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=1)


def settings_from_flags(**flags: Any) -> CloudSettings:
    """Settings from the environment, overridden by the flags that were given."""
    try:
        return CloudSettings(**{name: value for name, value in flags.items() if value is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise fail(f"{where}: {first['msg']}") from exc


def _public_url(host: str, port: int, *, https: bool = False) -> str:
    shown = socket.gethostname() if host in ("0.0.0.0", "::", "") else host
    return f"{'https' if https else 'http'}://{shown}:{port}"


def _api_hosts(host: str) -> list[str]:
    """Names for a generated API certificate: the bound address (unless a wildcard) and
    this machine's name (loopback names are always added by the CA)."""
    hosts = [socket.gethostname()]
    if host not in ("0.0.0.0", "::", ""):
        hosts.append(host)
    return hosts


Host = Annotated[str, typer.Option(help="Address the REST API listens on.")]
HttpPort = Annotated[int, typer.Option(help="Port of the REST API.")]
DatabaseUrl = Annotated[
    str | None, typer.Option(help="sqlite:///PATH or postgresql://... [default: in the data dir]")
]
MqttUrl = Annotated[str | None, typer.Option(help="The broker the bridge uses: mqtt://host:port")]
DataDir = Annotated[Path | None, typer.Option(help="Where the database, token and secrets live.")]
ShareGroup = Annotated[
    str | None, typer.Option(help="Split shadow traffic between replicas: $share/GROUP/...")
]
PublicUrl = Annotated[
    str | None, typer.Option(help="API URL put in install commands [default: http://HOST:PORT].")
]
LogLevel = Annotated[str, typer.Option(help="debug, info, warning or error.")]
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@app.command()
def serve(
    host: Host = "127.0.0.1",
    http_port: HttpPort = 9080,
    database_url: DatabaseUrl = None,
    mqtt_url: MqttUrl = None,
    data_dir: DataDir = None,
    share_group: ShareGroup = None,
    public_url: PublicUrl = None,
    log_level: LogLevel = "info",
    embedded_broker: Annotated[
        bool, typer.Option(help="Also run the embedded MQTT broker in this process; the bridge uses it.")
    ] = False,
    mqtt_port: Annotated[int, typer.Option(help="Port of the embedded broker (with --embedded-broker).")] = 1883,
    tls_cert: Annotated[Path | None, typer.Option(help="Serve HTTPS with this certificate (PEM).")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="The private key of --tls-cert (PEM).")] = None,
    tls_generate: Annotated[
        bool, typer.Option(help="Serve HTTPS with a certificate the cloud's CA issues for this host.")
    ] = False,
) -> None:
    """Run the cloud API and the MQTT bridge until interrupted."""
    logging.basicConfig(level=log_level.upper(), format=LOG_FORMAT)
    settings = settings_from_flags(
        database_url=database_url,
        mqtt_url=mqtt_url,
        data_dir=data_dir,
        share_group=share_group,
        public_url=public_url,
        tls_certfile=tls_cert,
        tls_keyfile=tls_key,
    )
    if tls_generate and settings.tls_certfile is not None:
        raise fail("--tls-generate replaces --tls-cert/--tls-key: pass one or the other")
    https = tls_generate or settings.tls_certfile is not None
    clouds: list[Cloud] = []  # the broker's password check is the cloud's, once it exists

    def authenticate(username: str | None, password: str | None) -> bool:
        return bool(clouds) and clouds[0].authenticate_mqtt(username, password)

    with ExitStack() as running:
        try:
            sock = bind_http(host, http_port, flag="--http-port")
            if "public_url" not in settings.model_fields_set:  # the bound port, if 0 was asked
                settings = settings.model_copy(
                    update={"public_url": _public_url(host, sock.getsockname()[1], https=https)}
                )
            if embedded_broker:
                if embedded_broker_factory is None:
                    raise fail("--embedded-broker is not available here: run `tether broker serve` instead")
                broker = embedded_broker_factory(host, mqtt_port, settings.topic_root, authenticate)
                settings = settings.model_copy(update={"mqtt_url": running.enter_context(broker)})
            cloud = running.enter_context(Cloud(settings))
            if tls_generate:
                files = cloud.issue_server_certificate(
                    settings.data_dir / "api-tls", common_name="tether-api", hosts=_api_hosts(host)
                )
                settings = settings.model_copy(
                    update={"tls_certfile": files.certfile, "tls_keyfile": files.keyfile}
                )
        except CloudError as exc:
            raise fail(exc.message) from exc
        clouds.append(cloud)
        cloud.start_bridge()
        if settings.share_group and (problem := cloud.verify_share_group()) is not None:
            raise fail(problem)
        freeze_startup_heap()  # before the banner, which tells that the API is up
        console.print(f"[bold]Tether cloud[/bold] API: {settings.public_url}")
        console.print(f"  admin token: {escape(cloud.admin_token_path)}")
        if embedded_broker:
            console.print(f"  embedded MQTT broker: {settings.mqtt_url}")
        console.print(f"  MQTT bridge: {settings.mqtt_url} (nodes get {settings.node_mqtt_url})")
        if tls_generate:
            console.print(f"  HTTPS certificate: {escape(str(settings.tls_certfile))} "
                          f"(clients trust {escape(str(settings.ca_certfile or settings.ca_dir / 'ca.crt'))})")
        serve_http(cloud.app, sock, log_level=log_level,
                   tls_certfile=settings.tls_certfile, tls_keyfile=settings.tls_keyfile)


@app.command("server-certificate")
def server_certificate(
    output: Annotated[Path, typer.Option(help="Directory for NAME.crt, NAME.key (0600) and ca.crt.")],
    host: Annotated[
        list[str] | None,
        typer.Option("--host", help="A name or address clients connect to (repeat); "
                                    "127.0.0.1, ::1 and localhost are always in."),
    ] = None,
    common_name: Annotated[str, typer.Option(help="The certificate's CN; names the files.")] = "tether-broker",
    data_dir: DataDir = None,
) -> None:
    """Issue a TLS server certificate from the cloud's CA, e.g. for Mosquitto's mTLS listener.

    Nodes trust only the cloud's CA, so the broker they reach over mqtts:// needs a
    certificate it issued. The CA is the data dir's (or TETHER_CLOUD_CA_CERTFILE/KEYFILE);
    the store is not opened. Files in --output are kept while they still serve."""
    settings = settings_from_flags(data_dir=data_dir)
    try:
        files = issue_server_files(
            load_authority(settings), output, common_name=common_name, hosts=host or (),
            days=settings.server_certificate_days, now=time.time(),
        )
    except CloudError as exc:
        raise fail(exc.message) from exc
    except OSError as exc:
        raise fail(f"cannot write to {output}: {exc.strerror or exc}") from exc
    console.print(f"wrote {escape(str(files.certfile))}, {escape(str(files.keyfile))} "
                  f"and {escape(str(files.cafile))}")


wheelhouse = typer.Typer(help="The wheels of Tether's dependencies, served for installs with no index.",
                         no_args_is_help=True)
app.add_typer(wheelhouse, name="wheelhouse")


@wheelhouse.command("build")
def wheelhouse_build(
    data_dir: DataDir = None,
    platform: Annotated[
        str | None, typer.Option(help="A node platform other than this one (pip's --platform, "
                                      "e.g. manylinux2014_aarch64); wheels only.")
    ] = None,
    python_version: Annotated[
        str | None, typer.Option(help="The nodes' Python if not this one's (e.g. 3.12).")
    ] = None,
    unpinned: Annotated[
        bool, typer.Option("--unpinned", help="Not the versions this cloud runs: the newest the "
                                              "requirements allow (when one has no wheel there).")
    ] = False,
    add: Annotated[
        bool, typer.Option("--add", help="Keep the wheels already there (nodes of several platforms).")
    ] = False,
) -> None:
    """Put the wheels of every dependency of the served Tether wheel into DATA_DIR/wheelhouse,
    at the versions this cloud runs, for this cloud's platform (or --platform): install.sh
    then installs with `pip install --no-index` from GET /v1/init/wheelhouse/. Needs a
    package index (PIP_INDEX_URL, a mirror) here, once; the nodes need none."""
    from cloud_api.packaging import WHEELHOUSE_DIRNAME, build_wheelhouse

    settings = settings_from_flags(data_dir=data_dir)
    try:
        names = build_wheelhouse(settings, platform=platform, python_version=python_version,
                                 pinned=not unpinned, add=add)
    except CloudError as exc:
        raise fail(exc.message) from exc
    console.print(f"{len(names)} wheels in {escape(str(settings.data_dir / WHEELHOUSE_DIRNAME))}; "
                  "install.sh now installs with --no-index from /v1/init/wheelhouse/")


if __name__ == "__main__":
    app()
