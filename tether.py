"""The root ``tether`` command: mounts each package's commands (filled in as they land)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Tether: cloud-edge management over MQTT shadow documents.", no_args_is_help=True)


def main() -> None:
    app()
