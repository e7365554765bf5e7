"""``tether edge ...``: the thin command layer over activation and the agent.

Each command parses its flags into ``EdgeSettings``, calls one library function and
prints one line. Every ``EdgeError`` becomes ``error: ...`` on stderr and exit code 1;
anything else is a bug and keeps its traceback. The root ``tether`` command mounts
``app`` as ``tether edge``; ``python -m edge_runtime`` runs it alone.
"""

from __future__ import annotations

import logging
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from edge_runtime.errors import EdgeError
from edge_runtime.settings import load_settings

app = typer.Typer(
    help="The edge agent: activate this node once, then run it.",
    no_args_is_help=True,
    add_completion=False,
)

DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Where identity and cache live [env TETHER_EDGE_DATA_DIR, default ./data/edge].",
    ),
]


class BackendChoice(str, Enum):
    native = "native"
    kube = "kube"


def _fail(exc: EdgeError) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(code=1)


@app.command()
def activate(
    cloud: Annotated[str, typer.Option("--cloud", help="The cloud API URL (http://HOST:9080).")],
    token: Annotated[
        str,
        typer.Option(
            "--token",
            envvar="TETHER_ACTIVATION_TOKEN",
            help="The install command's one-time token [env TETHER_ACTIVATION_TOKEN].",
        ),
    ],
    node: Annotated[
        str | None,
        typer.Option("--node", help="This node's identity NS/NODE (from the install command)."),
    ] = None,
    password: Annotated[
        bool,
        typer.Option("--password", help="Get an MQTT password instead of a certificate."),
    ] = False,
    cacert: Annotated[
        Path | None, typer.Option("--cacert", help="CA bundle that signed an https:// cloud.")
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Exchange a one-time token for this node's identity and broker credentials.

    By default the node makes its own key and gets a client certificate for it (the key
    never leaves the node); ``--password`` asks for a password instead.
    """
    import ssl

    from edge_runtime.activation import activate as activate_node  # httpx only when needed

    if not password and node is None:
        raise _fail(EdgeError("pass --node NS/NODE (it is in the install command), or --password"))
    try:
        settings = load_settings(data_dir=data_dir)
        verify: ssl.SSLContext | bool = True
        if cacert is not None:
            try:
                verify = ssl.create_default_context(cafile=str(cacert))
            except (OSError, ssl.SSLError) as exc:
                raise EdgeError(f"cannot read the CA bundle {cacert}: {exc}") from exc
        identity = activate_node(
            cloud, token, settings.data_dir, identity=None if password else node, verify=verify
        )
    except EdgeError as exc:
        raise _fail(exc) from exc
    name = f"{identity.namespace}/{identity.node}"
    how = "a password" if password else "a certificate"
    typer.echo(f"activated node {name} with {how}; identity stored in {settings.data_dir}")


@app.command()
def run(
    data_dir: DataDirOption = None,
    backend: Annotated[
        BackendChoice | None,
        typer.Option(
            "--backend", help="Where workloads run [env TETHER_EDGE_BACKEND, default native]."
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug messages.")] = False,
) -> None:
    """Run the edge agent until SIGTERM or Ctrl-C."""
    from edge_runtime.agent import EdgeAgent

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = load_settings(data_dir=data_dir, backend=backend.value if backend else None)
        EdgeAgent(settings).run()
    except EdgeError as exc:
        raise _fail(exc) from exc


@app.command()
def stop(
    data_dir: DataDirOption = None,
    remove_apps: Annotated[
        bool,
        typer.Option("--remove-apps", help="Also stop every app process the agent ran (native)."),
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0, help="Seconds to wait for the agent to stop.")
    ] = 60.0,
) -> None:
    """Stop the agent running on a data dir (SIGTERM); with --remove-apps, its apps too.

    Without --remove-apps the node's apps keep running, and the next `tether edge run`
    adopts them (same processes, no restart). With it, every app process is stopped
    (SIGTERM, SIGKILL after TETHER_EDGE_STOP_GRACE_SECONDS); the next `tether edge run`
    starts them again from the cached desired state. Under systemd, `systemctl stop
    tether-edge` first (or systemd restarts the agent), then `tether edge stop --remove-apps`.
    """
    from edge_runtime.stopping import stop_agent, stop_apps

    try:
        settings = load_settings(data_dir=data_dir)
        with stop_agent(settings.data_dir, timeout=timeout) as pid:
            said = f"stopped the agent (pid {pid})" if pid else "no agent was running"
            if not remove_apps:
                typer.echo(f"{said}; its apps keep running (--remove-apps stops them)")
                return
            stopped = stop_apps(settings.data_dir, grace=settings.stop_grace_seconds)
    except EdgeError as exc:
        raise _fail(exc) from exc
    except OSError as exc:
        raise _fail(EdgeError(f"cannot stop the apps in {settings.data_dir}: {exc}")) from exc
    names = ", ".join(stopped) if stopped else "none was running"
    typer.echo(f"{said}; stopped {len(stopped)} app processes ({names})")


@app.command("upgrade-watch", hidden=True)
def upgrade_watch(
    data_dir: DataDirOption = None,
    backend: Annotated[BackendChoice | None, typer.Option("--backend")] = None,
) -> None:
    """(kube) Watch a new agent pod's trial from the old pod; roll it back past its deadline.

    The agent execs this itself when it starts an upgrade (``edge_runtime.upgrading.kube``).
    """
    import os
    import time

    from edge_runtime.upgrading.kube import kube_upgrader
    from edge_runtime.upgrading.wiring import running_version

    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings(data_dir=data_dir, backend="kube")
        argv = ["run", "--data-dir", str(settings.data_dir), "--backend", "kube"]
        upgrader = kube_upgrader(settings, version=running_version(), argv=argv)
        again = upgrader.watch()
    except EdgeError as exc:
        raise _fail(exc) from exc
    if again is not None:
        os.execv(again[0], again)
    while True:  # committed: the Deployment retires this pod
        time.sleep(3600)
