"""The root ``tether`` command: mounts each package's commands.

Only the sub-application named on the command line is imported, so ``tether edge run``
loads the edge runtime alone (not FastAPI, SQLAlchemy or amqtt), which keeps an edge
node's memory small; ``tether --help`` loads them all to list them.
"""

from __future__ import annotations

import importlib
import sys

import typer

# command -> (module, attribute, help); attribute is a Typer app or a function
COMMANDS: dict[str, tuple[str, str, str]] = {
    "up": ("launcher.up", "up", "Run broker, cloud API and a local edge node in one process tree."),
    "broker": ("broker.cli", "app", "The embedded MQTT broker."),
    "cloud": ("launcher.cloud", "app", "The cloud API and MQTT bridge."),
    "edge": ("edge_runtime.cli", "app", "The edge agent: activate and run a node."),
    "apply": ("cloud_api.admin.cli", "apply", "Create or update what manifests describe (-f FILE)."),
    "get": ("cloud_api.admin.cli", "get", "List or show nodes, apps, configs, secrets, ..."),
    "describe": ("cloud_api.admin.cli", "describe", "Show one object in detail (a node: apps, status, delta)."),
    "delete": ("cloud_api.admin.cli", "delete", "Delete objects by kind and name, or those in -f FILE."),
    "shadow": ("cloud_api.admin.cli", "shadow_app", "Read, patch or trace the history of a node's shadow."),
    "rollout": ("cloud_api.admin.cli", "rollout_app", "An app's rollout: status, pause, resume, undo, history."),
    "logs": ("cloud_api.admin.observing", "logs", "Print an app's output on a node (--tail N, -f)."),
    "events": ("cloud_api.admin.observing", "events", "List app events: crashes, restarts, back-off."),
    "diff": ("cloud_api.admin.cli", "diff", "What apply -f would change, or what changed between two versions."),
    "audit": ("cloud_api.admin.access", "audit", "Who changed what: the audit trail of writes."),
    "token": ("cloud_api.admin.access", "token_app", "API tokens: create, list, describe, revoke."),
    "config": ("cloud_api.admin.contexts", "config_app", "Client contexts: set-context, use-context, get-contexts."),
    "version": ("cloud_api.admin.cli", "version", "The client's and the server's versions."),
    "agent": ("cloud_api.admin.agent", "app", "The edge agent's version: upload wheels, upgrade nodes."),
    "bench": ("launcher.benchcli", "app", "Benchmarks: shadow round trip, matching, functions, a simulated fleet."),
}


def build_app(only: str | None = None) -> typer.Typer:
    app = typer.Typer(
        help="Tether: cloud-edge management over MQTT shadow documents.",
        no_args_is_help=True,
        add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish)
    )
    # A callback keeps ``tether X`` a group even when only X is mounted.
    app.callback()(lambda: None)
    for name, (module, attribute, help_text) in COMMANDS.items():
        if only is not None and name != only:
            continue
        target = getattr(importlib.import_module(module), attribute)
        if isinstance(target, typer.Typer):
            app.add_typer(target, name=name, help=help_text)
        else:
            app.command(name=name, help=help_text)(target)
    return app


def main() -> None:
    first = next((arg for arg in sys.argv[1:] if not arg.startswith("-")), None)
    build_app(first if first in COMMANDS else None)()


if __name__ == "__main__":
    main()
