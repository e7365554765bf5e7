"""``tether up``: everything on one machine with embedded defaults, for a first look.

The default ports (HTTP 9080, MQTT 1883) are often taken on a developer machine (a local
Mosquitto holds 1883); when the user did not ask for a port, ``up`` says so on one line and
takes a free one instead of failing. A port asked for explicitly that is taken is an error.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console

from broker.errors import BrokerError
from cloud_api.admin.client import forget_up_state, record_up_state, up_state_path
from cloud_api.errors import CloudError
from edge_runtime.errors import EdgeError
from launcher.serving import port_is_free
from launcher.stack import LocalStack, StackConfig

DEFAULT_HTTP_PORT = 9080
DEFAULT_MQTT_PORT = 1883
DEFAULT_MQTTS_PORT = 8883
DEFAULT_DATA_DIR = Path("data")

console = Console(highlight=False, soft_wrap=True)


def _choose_port(host: str, wanted: int | None, default: int, what: str, flag: str) -> int:
    if wanted is not None:
        return wanted
    if port_is_free(host, default):
        return default
    console.print(f"[yellow]{what} port {default} is in use; using a free port (pass {flag} to choose)[/]")
    return 0


def up(
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="where state, tokens and logs live")
    ] = DEFAULT_DATA_DIR,
    http_port: Annotated[
        int | None,
        typer.Option("--http-port", help=f"REST API port [default: {DEFAULT_HTTP_PORT}]"),
    ] = None,
    mqtt_port: Annotated[
        int | None,
        typer.Option("--mqtt-port", help=f"MQTT port [default: {DEFAULT_MQTT_PORT}]"),
    ] = None,
    mqtts_port: Annotated[
        int | None,
        typer.Option(
            "--mqtts-port",
            help="MQTT over mTLS port for nodes with certificates "
            f"[default: {DEFAULT_MQTTS_PORT}]",
        ),
    ] = None,
    host: Annotated[
        str, typer.Option("--host", help="address the API and broker listen on")
    ] = "127.0.0.1",
    no_edge: Annotated[
        bool, typer.Option("--no-edge", help="do not run the local edge node")
    ] = False,
    no_demo: Annotated[
        bool, typer.Option("--no-demo", help="do not create the demo app on the local node")
    ] = False,
) -> None:
    """Run broker, cloud API and a local edge node 'local' in one process tree."""
    config = StackConfig(
        data_dir=data_dir.resolve(),
        http_host=host,
        mqtt_host=host,
        http_port=_choose_port(host, http_port, DEFAULT_HTTP_PORT, "HTTP", "--http-port"),
        mqtt_port=_choose_port(host, mqtt_port, DEFAULT_MQTT_PORT, "MQTT", "--mqtt-port"),
        mqtts_port=_choose_port(host, mqtts_port, DEFAULT_MQTTS_PORT, "MQTT/TLS", "--mqtts-port"),
        edge=not no_edge,
        demo_app=not no_demo,
    )
    stack = LocalStack(config)
    try:
        stack.start()
    except (BrokerError, CloudError, EdgeError) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc

    def _interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _interrupt)
    token_path = stack.cloud.settings.admin_token_path if stack.cloud else data_dir / "admin.token"
    console.print(f"API   {stack.api_url}")
    console.print(f"MQTT  {stack.mqtt_url}")
    if stack.mqtts_url:
        console.print(f"MQTTS {stack.mqtts_url} (mTLS; CA {config.data_dir / 'ca' / 'ca.crt'})")
    console.print(f"Admin token in {token_path}")
    if config.edge:
        console.print(f"Edge node default/{config.local_node} running (log: {stack.edge_log})")
        if config.demo_app:
            console.print("Demo app 'demo' runs on it: tether get apps; tether rollout status demo")
        console.print(
            f'Try: curl -s -H "Authorization: Bearer $(cat {token_path})" '
            f"{stack.api_url}/v1/namespaces/default/nodes/{config.local_node}/shadow"
        )
    here = Path(sys.executable).parent  # the venv's bin (not resolved: a venv links python)
    on_path = shutil.which("tether")
    if on_path is None or Path(on_path).parent != here:
        console.print(f'The hints above need this tether on your PATH: export PATH="{here}:$PATH"')
    state = up_state_path(os.environ)
    try:  # so that `tether get ...` finds this API and its token from any directory
        record_up_state(state, server=stack.api_url, token_file=token_path.resolve(),
                        pid=os.getpid())
    except OSError as exc:
        console.print(f"[yellow]cannot write {state} ({exc.strerror or exc}): run the CLI from "
                      f"this directory or pass --server {stack.api_url}[/]")
    console.print("Ctrl-C stops everything.")
    code = 0
    try:
        code = stack.wait()
        console.print(f"[red]the local edge node exited ({code}); see {stack.edge_log}[/]")
    except KeyboardInterrupt:
        console.print("stopping...")
    finally:
        stack.stop()
        forget_up_state(state, pid=os.getpid())
    raise typer.Exit(code)
