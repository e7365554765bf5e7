"""What every admin command shares: its options, the client it connects, one-line errors.

Why it exists: ``cli`` (objects), ``access`` (tokens, audit) and ``contexts`` (the config
file) take the same ``--server``/``--token``/``--namespace`` and fail the same way (one
line ``error: ...`` on stderr, exit 1), so that is written once, here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console

from cloud_api.admin.client import ClientConfig, ClientError, TetherClient

WHERE = ("Server and token: --server/--token, else TETHER_SERVER/TETHER_TOKEN, else "
         "server:/token:/namespace: in $XDG_CONFIG_HOME/tether/config.yaml "
         "(~/.config/tether/config.yaml), else the `tether up` running on this machine "
         "(from any directory); the defaults are http://127.0.0.1:9080 and, "
         "without a token, ./data/admin.token (what `tether up` writes).")

Server = Annotated[str | None, typer.Option("--server", help="API URL (env TETHER_SERVER)")]
Token = Annotated[str | None, typer.Option("--token", help="API token (env TETHER_TOKEN)", show_default=False)]
Namespace = Annotated[str | None, typer.Option("--namespace", "-n", help="namespace (env TETHER_NAMESPACE; else default)")]
Output = Annotated[str, typer.Option("--output", "-o", help="table, wide, name, yaml or json")]
Files = Annotated[list[str] | None, typer.Option(
    "--filename", "-f", help="manifest file or directory (its *.yaml, *.yml, *.json); '-' for stdin")]
Selector = Annotated[str | None, typer.Option("--selector", "-l", help="label selector, e.g. site=paris,tier!=db")]
AllNamespaces = Annotated[bool, typer.Option("--all-namespaces", "-A", help="every namespace the token sees")]
DryRun = Annotated[str, typer.Option("--dry-run", help="none, or server: the server checks, stores nothing")]


def console() -> Console:
    return Console(highlight=False, soft_wrap=False)


@contextmanager
def one_line_errors() -> Iterator[None]:
    try:
        yield
    except ClientError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(code=1) from None


@contextmanager
def connected(server: str | None, token: str | None, namespace: str | None) -> Iterator[tuple[TetherClient, str]]:
    """The client and the namespace to use; errors become one line and exit 1."""
    with one_line_errors():
        config = ClientConfig.resolve(server=server, token=token, namespace=namespace)
        with TetherClient(config.server, config.token) as client:
            yield client, config.namespace
