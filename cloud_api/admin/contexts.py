"""``tether config set-context|use-context|get-contexts``: named contexts in the config file.

Why it exists: an operator with several clouds (lab, staging, production) switches with
one command, as with kubectl; ``client.ClientConfig.resolve`` reads the current context.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from cloud_api.admin.client import ClientError, read_config, write_config
from cloud_api.admin.options import console, one_line_errors

config_app = typer.Typer(help="The client config file: contexts.", no_args_is_help=True)


@config_app.command("get-contexts")
def config_get_contexts() -> None:
    """The contexts of the config file; * marks the current one."""
    with one_line_errors():
        _, config = read_config()
        current = config.get("current-context")
        table = Table(box=None, pad_edge=False, header_style="bold")
        for column in ("CURRENT", "NAME", "SERVER", "NAMESPACE"):
            table.add_column(column)
        for name, values in sorted(config.get("contexts", {}).items()):
            table.add_row("*" if name == current else "", name, values.get("server", ""),
                          values.get("namespace", ""))
        console().print(table)


@config_app.command("use-context")
def config_use_context(name: str) -> None:
    """Make NAME the current context."""
    with one_line_errors():
        path, config = read_config()
        if name not in config.get("contexts", {}):
            raise ClientError(404, f"no context {name!r} in {path}: create it with "
                              "`tether config set-context NAME --server URL`")
        write_config(path, {**config, "current-context": name})
        typer.echo(f"Switched to context {name!r}.")


@config_app.command("set-context")
def config_set_context(
    name: str,
    server: Annotated[str | None, typer.Option("--server")] = None,
    token: Annotated[str | None, typer.Option("--token")] = None,
    namespace: Annotated[str | None, typer.Option("--namespace", "-n")] = None,
) -> None:
    """Create or change a context (only the values given change)."""
    with one_line_errors():
        path, config = read_config()
        contexts = dict(config.get("contexts", {}))
        values = dict(contexts.get(name, {}))
        values.update({k: v for k, v in (("server", server), ("token", token),
                                          ("namespace", namespace)) if v is not None})
        contexts[name] = values
        write_config(path, {**config, "contexts": contexts})
        typer.echo(f"Context {name!r} set in {path}.")
