"""``tether agent upload|upgrade|status|rollout``: the agent versions nodes run (self-upgrade).

Thin like every admin command: parse, call the client, print. ``upload`` stores a wheel
(built with ``pip wheel --no-deps .``, say) and prints its version and sha256; ``upgrade``
sets ``desired.sysapps.tether`` of nodes by name and/or label selector (all nodes if
neither), at once or in waves (``--waves``, gated like an app's ``spec.rollout``);
``status`` shows what each node reports for a version; ``rollout`` shows or acts on the
wave rollout (``status``, ``pause``, ``resume``, ``undo``).
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
    waves: Annotated[str | None, typer.Option(
        "--waves", help="roll out in waves of these sizes, e.g. 1,25%,100%")] = None,
    max_failures: Annotated[str, typer.Option("--max-failures", help="failures tolerated")] = "0",
    on_failure: Annotated[str, typer.Option("--on-failure", help="pause or rollback")] = "rollback",
    min_ready: Annotated[int, typer.Option("--min-ready", help="seconds healthy per node")] = 30,
    order_by: Annotated[str | None, typer.Option(
        "--order-by", help="nodes by this label's value first (canary=a, say)")] = None,
    server: Server = None, token: Token = None, namespace: Namespace = None,
) -> None:
    """Set the agent version of nodes (by --node and/or -l; every node if neither), at once
    or, with --waves, wave by wave with health gates (see `tether agent rollout`)."""
    with connected(server, token, namespace) as (client, ns), one_line_errors():
        body: dict[str, Any] = {"version": None if version == "none" else version,
                                "nodes": node or None, "selector": selector, "image": image,
                                "deadlineSeconds": deadline}
        if waves is not None:
            body["rollout"] = {"waves": [_amount(w) for w in waves.split(",") if w.strip()],
                               "maxFailures": _amount(max_failures), "onFailure": on_failure,
                               "minReadySeconds": min_ready, "orderBy": order_by}
        done = client.agent_upgrade(body, namespace=ns)
        if "rollout" in done:
            typer.echo(f"agent {version}: rollout to {len(done['nodes'])} nodes "
                       f"{done['rollout']['phase']}: {done['rollout']['message']}")
            return
        typer.echo(f"agent {version}: {len(done['updated'])} of {len(done['nodes'])} nodes "
                   "updated")


def _amount(text: str) -> int | str:
    """A wave size or failure count as the API takes it: a count, or a percentage."""
    text = text.strip()
    return int(text) if text.isdigit() else text


@app.command("rollout")
def rollout(action: Annotated[str, typer.Argument(help="status, pause, resume or undo")],
            server: Server = None, token: Token = None, namespace: Namespace = None) -> None:
    """Show the agent's wave rollout, or pause, resume or undo it."""
    with connected(server, token, namespace) as (client, ns), one_line_errors():
        if action not in ("status", "pause", "resume", "undo"):
            raise ClientError(400, f"no rollout action {action!r}: use status, pause, resume "
                                   "or undo")
        found = client.agent_rollout(action, namespace=ns)
        typer.echo(f"{found['phase']}: {found['message']}")
        if action != "status":
            return
        table = Table(box=None, pad_edge=False, header_style="bold")
        for column in ("NODE", "WAVE", "OUTCOME", "CAUSE"):
            table.add_column(column, overflow="fold")
        for name, entry in found["nodes"].items():
            table.add_row(name, str(entry["wave"]), entry["outcome"], entry["cause"])
        console().print(table)


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
