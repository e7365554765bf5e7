"""``tether agent upload|upgrade|status``: the agent versions nodes run (self-upgrade).

Thin like every admin command: parse, call the client, print. ``upload`` stores a wheel
(built with ``pip wheel --no-deps .``, say) and prints its version and sha256; ``upgrade``
sets ``desired.sysapps.tether`` of nodes by name and/or label selector (all nodes if
neither); ``status`` shows what each node reports for a version.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cloud_api.admin.client import ClientError
from cloud_api.admin.options import Namespace, Server, Token, connected, console, one_line_errors

app = typer.Typer(help="The edge agent's own version: upload wheels, upgrade nodes.",
                  no_args_is_help=True)


@app.command("upload")
def upload(file: Annotated[Path, typer.Argument(help="a tether wheel (.whl)")],
           server: Server = None, token: Token = None) -> None:
    """Store an agent wheel on the cloud (admin token); nodes fetch it from there."""
    with connected(server, token, None) as (client, _), one_line_errors():
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise ClientError(400, f"cannot read {file}: {exc.strerror}") from exc
        stored = client.agent_upload(data)
        typer.echo(f"agent wheel {stored['version']} stored: sha256 {stored['sha256']}")


@app.command("upgrade")
def upgrade(
    version: Annotated[str, typer.Argument(help="the version to run; 'none' clears the target")],
    node: Annotated[list[str] | None, typer.Option("--node", help="a node (repeat for more)")] = None,
    selector: Annotated[str | None, typer.Option("--selector", "-l", help="label selector")] = None,
    image: Annotated[str, typer.Option("--image", help="the agent image, for kube nodes")] = "",
    deadline: Annotated[int, typer.Option("--deadline", help="seconds to report healthy")] = 120,
    server: Server = None, token: Token = None, namespace: Namespace = None,
) -> None:
    """Set the agent version of nodes (by --node and/or -l; every node if neither)."""
    with connected(server, token, namespace) as (client, ns), one_line_errors():
        body: dict[str, Any] = {"version": None if version == "none" else version,
                                "nodes": node or None, "selector": selector, "image": image,
                                "deadlineSeconds": deadline}
        done = client.agent_upgrade(body, namespace=ns)
        typer.echo(f"agent {version}: {len(done['updated'])} of {len(done['nodes'])} nodes "
                   "updated")


@app.command("status")
def status(version: Annotated[str, typer.Argument(help="the version to check")],
           server: Server = None, token: Token = None, namespace: Namespace = None) -> None:
    """What each node reports of its agent, and whether it runs VERSION healthy."""
    with connected(server, token, namespace) as (client, ns), one_line_errors():
        found = client.agent_status(version, namespace=ns)
        table = Table(box=None, pad_edge=False, header_style="bold")
        for column in ("NODE", "AGENT", "STATE", "TARGET", "UPGRADED", "CAUSE"):
            table.add_column(column, overflow="fold")
        for name, entry in sorted(found["nodes"].items()):
            agent = entry.get("agent") or {}
            gate = {True: "yes", False: "no", None: "-"}[entry.get("upgraded")]
            table.add_row(name, agent.get("version", "-"), agent.get("state", "-"),
                          agent.get("target", "-"), gate, agent.get("cause", ""))
        console().print(table)
