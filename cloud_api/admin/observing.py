"""``tether logs`` and ``tether events``: what an app printed on its node, and what happened
to it (crashes, restarts, back-off), read through the cloud.

Thin like the rest of the admin CLI: parse, call ``TetherClient.logs``/``follow_logs``/
``events``, print. ``tether.py`` mounts ``logs`` and ``events`` at the top level; ``app``
holds both, for tests and scripts. Errors are one line on stderr and exit 1 (an offline
node: the cloud's 503 message, with when it was last seen).
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from cloud_api.admin.client import ClientError
from cloud_api.admin.options import (
    Namespace,
    Output,
    Server,
    Token,
    connected,
    console,
    one_line_errors,
)
from cloud_api.admin.views import dump

Tail = Annotated[int | None, typer.Option("--tail", help="last lines of each instance (default 100, max 10000)")]
Follow = Annotated[bool, typer.Option("--follow", "-f", help="keep printing new lines until Ctrl-C")]


def logs(node: Annotated[str, typer.Argument(help="the node the app runs on")],
         app_name: Annotated[str, typer.Argument(metavar="APP", help="the app")],
         service: Annotated[str | None, typer.Argument(help="one service of the app (all if left out)")] = None,
         tail: Tail = None, follow: Follow = False, server: Server = None, token: Token = None,
         namespace: Namespace = None) -> None:
    """Print an app's output on a node (the last lines of each instance; -f to follow)."""
    with connected(server, token, namespace) as (client, ns), one_line_errors():
        if follow:
            try:
                for lines in client.follow_logs(node, app_name, service=service, tail=tail, namespace=ns):
                    for line in lines:
                        typer.echo(line)
            except KeyboardInterrupt:
                return
            return
        found = client.logs(node, app_name, service=service, tail=tail, namespace=ns)
        for line in found["lines"]:
            typer.echo(line)
        if found.get("truncated"):
            typer.echo("(older lines left out: the answer is bounded to 1 MiB)", err=True)


def events(node: Annotated[str | None, typer.Option("--node", help="only this node's events")] = None,
           app_name: Annotated[str | None, typer.Option("--app", help="only this app's events")] = None,
           limit: Annotated[int, typer.Option("--limit", help="at most this many, newest first")] = 100,
           output: Output = "table", server: Server = None, token: Token = None,
           namespace: Namespace = None) -> None:
    """List the apps' events (Crashed, Restarted, BackOff, Started...), newest first."""
    with connected(server, token, namespace) as (client, ns), one_line_errors():
        if output not in ("table", "yaml", "json"):
            raise ClientError(400, f"unknown output {output!r}: use table, yaml or json")
        items: list[dict[str, object]] = []
        page: str | None = None
        while len(items) < limit:
            found = client.events(namespace=ns, node=node, app=app_name,
                                  limit=min(1000, limit - len(items)), continue_=page)
            items += found["items"]
            page = found.get("continue")
            if not page:
                break
        if output != "table":
            typer.echo(dump(items, output))
            return
        table = Table(box=None, pad_edge=False)
        for column in ("LAST SEEN", "NODE", "APP", "SERVICE", "KIND", "COUNT", "MESSAGE"):
            table.add_column(column)
        for item in items:
            table.add_row(str(item["time"]), str(item["node"]), str(item["app"]),
                          str(item["service"]), str(item["kind"]), str(item["count"]),
                          str(item["message"]))
        console().print(table)


app = typer.Typer(help="Logs and events of the apps on the nodes.", no_args_is_help=True)
app.command("logs")(logs)
app.command("events")(events)
