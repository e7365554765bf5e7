"""``tether audit`` and ``tether token create|list|describe|revoke``: who may do what, and
who did what.

Why it exists: token administration and the audit trail are an admin's concern apart
from managing objects; thin like every command (STYLE §11): parse, call the client,
render with ``views``. A token's secret is printed once, by ``token create``.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cloud_api.admin import views
from cloud_api.admin.options import Output, Server, Token, connected, console, one_line_errors


def audit(
    ns_filter: Annotated[str | None, typer.Option("--namespace", "-n", help="only this namespace")] = None,
    token_id: Annotated[int | None, typer.Option("--token-id", help="only writes by this token id")] = None,
    kind: Annotated[str | None, typer.Option("--kind", help="only this kind: app, node, shadow, token ...")] = None,
    since: Annotated[str | None, typer.Option("--since", help="ISO 8601 time, e.g. 2026-12-06T15:00:00Z")] = None,
    limit: Annotated[int, typer.Option("--limit", help="at most this many, newest first")] = 100,
    output: Output = "table", server: Server = None, token: Token = None,
) -> None:
    """Who changed what: the audit trail of writes, newest first (refused ones marked)."""
    with connected(server, token, None) as (client, _), one_line_errors():
        items: list[dict[str, Any]] = []
        params: dict[str, Any] = {"namespace": ns_filter, "token": token_id, "kind": kind,
                                  "since": since}
        while len(items) < limit:
            page = client.audit(**params, limit=min(1000, limit - len(items)))
            items += page["items"]
            if not page.get("continue"):
                break
            params["continue"] = page["continue"]
        if output in ("json", "yaml"):
            typer.echo(views.dump(items, output))
        else:
            console().print(views.audit_table(items))


token_app = typer.Typer(help="API tokens: create, list, describe, revoke (admin).", no_args_is_help=True)


@token_app.command("create")
def token_create(
    role: Annotated[str, typer.Option("--role", help="admin, editor or viewer")],
    namespaces: Annotated[list[str] | None, typer.Option("--namespace", "-n", help="a namespace it sees (repeat)")] = None,
    description: Annotated[str, typer.Option("--description")] = "",
    server: Server = None, token: Token = None,
) -> None:
    """Create a token; its secret is printed once, here, and never again."""
    with connected(server, token, None) as (client, _), one_line_errors():
        issued = client.create_token(role, namespaces or [], description)
        typer.echo(f"token/{issued['id']} created; its secret (shown only now):")
        typer.echo(issued["token"])


@token_app.command("list")
def token_list(server: Server = None, token: Token = None) -> None:
    """Every token (never their secrets)."""
    with connected(server, token, None) as (client, _), one_line_errors():
        console().print(views.token_table(client.tokens()))


@token_app.command("describe")
def token_describe(token_id: Annotated[int, typer.Argument(metavar="ID")],
                   server: Server = None, token: Token = None) -> None:
    """One token: role, namespaces, description, dates."""
    with connected(server, token, None) as (client, _), one_line_errors():
        typer.echo(views.dump(client.token(token_id), "yaml"))


@token_app.command("revoke")
def token_revoke(token_id: Annotated[int, typer.Argument(metavar="ID")],
                 server: Server = None, token: Token = None) -> None:
    """Revoke a token: refused from its next request on."""
    with connected(server, token, None) as (client, _), one_line_errors():
        client.revoke_token(token_id)
        typer.echo(f"token/{token_id} revoked")
