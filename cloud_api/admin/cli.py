"""``tether apply|get|describe|delete|diff|shadow|rollout``: the kubectl-like admin client.

Thin, as every CLI here (STYLE §11): parse flags, call ``client``/``applying``, render
with ``views``. Every ``ClientError`` (refused request, unreachable server,
malformed manifest, bad config) is one line ``error: ...`` on stderr and exit 1.

The root ``tether.py`` mounts, at the top level: the commands ``apply``, ``get``,
``describe``, ``delete``, ``diff`` and the groups ``shadow_app`` (as ``shadow``) and
``rollout_app`` (as ``rollout``). ``app`` holds all of them, for tests and scripts.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cloud_api.admin import history_views, views
from cloud_api.admin.applying import FAILED, apply_manifests, delete_manifest, rollout_state
from cloud_api.admin.client import ClientConfig, ClientError, TetherClient, kind_of
from cloud_api.admin.manifests import APPLY_ORDER, Manifest, ManifestError, parse_manifests

WHERE = ("Server and token: --server/--token, else TETHER_SERVER/TETHER_TOKEN, else "
         "server:/token:/namespace: in $XDG_CONFIG_HOME/tether/config.yaml "
         "(~/.config/tether/config.yaml); the defaults are http://127.0.0.1:9080 and, "
         "without a token, ./data/admin.token (what `tether up` writes).")

Server = Annotated[str | None, typer.Option("--server", help="API URL (env TETHER_SERVER)")]
Token = Annotated[str | None, typer.Option("--token", help="API token (env TETHER_TOKEN)", show_default=False)]
Namespace = Annotated[str | None, typer.Option("--namespace", "-n", help="namespace (env TETHER_NAMESPACE; else default)")]
Output = Annotated[str, typer.Option("--output", "-o", help="table, yaml or json")]
Files = Annotated[list[str] | None, typer.Option("--filename", "-f", help="manifest file, '-' for stdin")]


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


def read_text(path: str) -> tuple[str, str]:
    """(text, name for messages) of a file, or of stdin for ``-``."""
    if path == "-":
        return sys.stdin.read(), "<stdin>"
    try:
        return Path(path).read_text(encoding="utf-8"), path
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"cannot read {path}: {exc}") from exc


def read_manifests(files: list[str], namespace: str) -> list[Manifest]:
    manifests: list[Manifest] = []
    for path in files:
        text, source = read_text(path)
        manifests.extend(parse_manifests(text, source=source, default_namespace=namespace))
    return sorted(manifests, key=lambda manifest: APPLY_ORDER[manifest.kind.name])


# -- commands --------------------------------------------------------------------------
def apply(files: Files = None, server: Server = None, token: Token = None,
          namespace: Namespace = None) -> None:
    """Create or update the objects of manifest files (YAML or JSON, several per file).

    Prints `KIND/NAME created|configured|unchanged|failed: why` for each; many nodes are
    created in bulk (1,000 per request)."""
    with connected(server, token, namespace) as (client, ns), one_line_errors():
        if not files:
            raise ManifestError("give a manifest file with -f FILE (or -f - for stdin)")
        refused = 0
        for manifest, outcome in apply_manifests(client, read_manifests(files, ns)):
            typer.echo(f"{manifest.ref} {outcome}")
            refused += outcome.startswith(FAILED)
        if refused:
            typer.echo(f"error: {refused} object(s) failed; the others were applied", err=True)
            raise typer.Exit(code=1)


def get(kind: Annotated[str, typer.Argument(help="nodes, apps, configs, secrets, certificates, registries or namespaces")],
        name: Annotated[str | None, typer.Argument(help="one object; all if left out")] = None,
        output: Output = "table", server: Server = None, token: Token = None,
        namespace: Namespace = None) -> None:
    """List objects of a kind, or show one."""
    with connected(server, token, namespace) as (client, ns), one_line_errors():
        if output not in ("table", "yaml", "json"):
            raise ClientError(400, f"unknown output {output!r}: use table, yaml or json")
        found = kind_of(kind)
        items = [client.get(kind, name, namespace=ns)] if name else client.list_all(kind, namespace=ns)
        if output == "table":
            console().print(views.object_table(found.plural, items))
        else:
            typer.echo(views.dump(items[0] if name else items, output))


def describe(kind: Annotated[str, typer.Argument(help="node, app or any other kind")],
             name: str, server: Server = None, token: Token = None,
             namespace: Namespace = None) -> None:
    """Show an object in detail: a node with its apps, delta and facts; an app with its rollout."""
    with connected(server, token, namespace) as (client, ns), one_line_errors():
        found = kind_of(kind)
        item = client.get(kind, name, namespace=ns)
        if found.singular == "node":
            console().print(views.describe_node(item, client.shadow_get(name, namespace=ns)))
            return
        typer.echo(views.dump(item, "yaml"))
        if found.singular == "app":
            console().print(views.rollout_table(client.app_nodes(name, namespace=ns)))


def delete(kind: Annotated[str | None, typer.Argument(help="the kind, e.g. app")] = None,
           name: Annotated[str | None, typer.Argument()] = None, files: Files = None,
           server: Server = None, token: Token = None, namespace: Namespace = None) -> None:
    """Delete an object (KIND NAME), or every object of manifest files (-f)."""
    with connected(server, token, namespace) as (client, ns), one_line_errors():
        if files:
            for manifest in reversed(read_manifests(files, ns)):
                typer.echo(f"{manifest.ref} {delete_manifest(client, manifest)}")
            return
        if kind is None or name is None:
            raise ClientError(400, "give KIND NAME, or -f FILE")
        client.delete(kind, name, namespace=ns)
        typer.echo(f"{kind_of(kind).singular}/{name} deleted")


shadow_app = typer.Typer(help="Read and patch a node's shadow document.", no_args_is_help=True)
rollout_app = typer.Typer(help="Follow an app's rollout over its matched nodes.", no_args_is_help=True)


@shadow_app.command("get")
def shadow_get(node: str, output: Annotated[str, typer.Option("--output", "-o", help="json or yaml")] = "json",
               server: Server = None, token: Token = None, namespace: Namespace = None) -> None:
    """Print the node's shadow document (desired, reported, delta, metadata, version)."""
    with connected(server, token, namespace) as (client, ns):
        typer.echo(views.dump(client.shadow_get(node, namespace=ns), output))


@shadow_app.command("patch")
def shadow_patch(
    node: str,
    desired: Annotated[str | None, typer.Option("--desired", help="a JSON merge patch of desired")] = None,
    file: Annotated[str | None, typer.Option("--file", help="the patch as YAML/JSON; '-' for stdin")] = None,
    version: Annotated[int | None, typer.Option("--version", help="apply only at this version")] = None,
    server: Server = None, token: Token = None, namespace: Namespace = None,
) -> None:
    """Merge-patch the desired state (null deletes a key); prints the new version and delta."""
    with connected(server, token, namespace) as (client, ns), one_line_errors():
        patch = _patch_of(desired, file)
        document = client.shadow_patch(node, patch, namespace=ns, version=version)
        delta = document.get("state", {}).get("delta") or {}
        typer.echo(f"node/{node} shadow patched: version {document.get('version')}, "
                   f"delta {json.dumps(delta, sort_keys=True)}")


def _patch_of(desired: str | None, file: str | None) -> Any:
    if (desired is None) == (file is None):
        raise ClientError(400, "give the patch with exactly one of --desired JSON or --file FILE")
    if desired is not None:
        try:
            return json.loads(desired)
        except ValueError as exc:
            raise ClientError(400, f"--desired is not valid JSON: {exc}") from exc
    text, source = read_text(file or "-")
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ManifestError(f"{source}: not valid YAML or JSON: {exc}") from exc


@rollout_app.command("status")
def rollout_status(
    app_name: Annotated[str, typer.Argument(metavar="APP")],
    wait: Annotated[bool, typer.Option("--wait", help="wait until every online matched node runs it")] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="seconds to wait")] = 300.0,
    interval: Annotated[float, typer.Option("--interval", help="seconds between polls", hidden=True)] = 1.0,
    server: Server = None, token: Token = None, namespace: Namespace = None,
) -> None:
    """Show how many matched nodes run the app's version; --wait follows it to the end.

    Exits 1 if a node reports Failed, or (with --wait) on timeout, naming the nodes."""
    with connected(server, token, namespace) as (client, ns), one_line_errors():
        rollout = client.rollout(app_name, namespace=ns)
        if wait:
            rollout = _follow(client, app_name, ns, rollout, timeout=timeout, interval=interval)
        console().print(views.rollout_table(rollout))
        line = history_views.rollout_line(rollout)
        if line is not None:
            typer.echo(line)
        if rollout.get("phase") == "rolledBack":
            raise ClientError(500, f"rollout of app/{app_name} rolled back: {rollout.get('message')}")
        state = rollout_state(rollout)
        if state.failed:
            raise ClientError(500, f"rollout of app/{app_name} failed on: {'; '.join(state.failed)}")
        if wait and not state.done:
            raise ClientError(0, f"rollout of app/{app_name} timed out after {timeout:g}s "
                              f"({state.updated}/{state.matched} updated); waiting on: "
                              f"{'; '.join(state.waiting)}")
        if state.offline:
            typer.echo(f"not waited for (offline): {', '.join(state.offline)}")


def _follow(client: TetherClient, app_name: str, namespace: str, rollout: dict[str, Any], *,
            timeout: float, interval: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    columns = (TextColumn(f"app/{app_name}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("updated"), TimeElapsedColumn())
    with Progress(*columns, console=console(), transient=False) as progress:
        task = progress.add_task("rollout", total=None)
        while True:
            state = rollout_state(rollout)
            progress.update(task, total=max(state.matched, 1), completed=state.updated)
            waves = rollout.get("phase", "allAtOnce") != "allAtOnce"  # waves: until it settles
            settled = rollout.get("phase") != "progressing" if waves else state.done or state.failed
            if settled or time.monotonic() >= deadline:
                return rollout
            time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
            rollout = client.rollout(app_name, namespace=namespace)


def _rollout_action(action: str, app_name: str, server: str | None, token: str | None,
                    namespace: str | None) -> None:
    with connected(server, token, namespace) as (client, ns), one_line_errors():
        done = client.rollout_action(app_name, action, namespace=ns)
        typer.echo(f"app/{app_name} rollout {done.get('phase')}: {done.get('message')}")


@rollout_app.command("pause")
def rollout_pause(app_name: Annotated[str, typer.Argument(metavar="APP")], server: Server = None,
                  token: Token = None, namespace: Namespace = None) -> None:
    """Admit no further wave (the nodes already on the new version keep it)."""
    _rollout_action("pause", app_name, server, token, namespace)


@rollout_app.command("resume")
def rollout_resume(app_name: Annotated[str, typer.Argument(metavar="APP")], server: Server = None,
                   token: Token = None, namespace: Namespace = None) -> None:
    """Go on with a paused rollout; the failures so far are accepted."""
    _rollout_action("resume", app_name, server, token, namespace)


@rollout_app.command("undo")
def rollout_undo(app_name: Annotated[str, typer.Argument(metavar="APP")], server: Server = None,
                 token: Token = None, namespace: Namespace = None) -> None:
    """Roll every node the rollout touched back to the last healthy version."""
    _rollout_action("undo", app_name, server, token, namespace)


@rollout_app.command("history")
def rollout_history(app_name: Annotated[str, typer.Argument(metavar="APP")], output: Output = "table",
                    server: Server = None, token: Token = None, namespace: Namespace = None) -> None:
    """Every version of the app, newest first, with what changed in each."""
    with connected(server, token, namespace) as (client, ns), one_line_errors():
        body = client.versions("app", app_name, namespace=ns)
        if output == "table":
            console().print(history_views.history_table(body))
        else:
            typer.echo(views.dump(body, output))


def diff(kind: Annotated[str, typer.Argument(help="app, config, secret, certificate or registry")],
         name: str,
         old: Annotated[str | None, typer.Option("--from", help="the older version (default: the one before --to)")] = None,
         new: Annotated[str | None, typer.Option("--to", help="the newer version (default: the current one)")] = None,
         output: Annotated[str, typer.Option("--output", "-o", help="text, yaml or json")] = "text",
         server: Server = None, token: Token = None, namespace: Namespace = None) -> None:
    """What changed between two versions of a resource (a secret shows its key names only)."""
    with connected(server, token, namespace) as (client, ns), one_line_errors():
        body = client.diff(kind, name, old, new, namespace=ns)
        if output == "text":
            typer.echo("\n".join(history_views.diff_lines(body)))
        else:
            typer.echo(views.dump(body, output))


@shadow_app.command("history")
def shadow_history(
    node: str,
    at: Annotated[str | None, typer.Option("--at", help="revisions up to then: epoch, ISO time or HH:MM (UTC)")] = None,
    limit: Annotated[int, typer.Option("--limit", help="most revisions shown")] = 20,
    output: Output = "table", server: Server = None, token: Token = None, namespace: Namespace = None,
) -> None:
    """A node's recent shadow revisions, newest first: what it was told and ran, and who
    wrote each (node, rest:token/ID, matching:APPS, rollout:APP)."""
    with connected(server, token, namespace) as (client, ns), one_line_errors():
        when = history_views.parse_at(at) if at is not None else None
        body = client.shadow_history(node, namespace=ns, limit=limit, at=when)
        if output == "table":
            console().print(history_views.shadow_history_table(body))
        else:
            typer.echo(views.dump(body, output))


app = typer.Typer(help="Manage a Tether cloud over its REST API. " + WHERE, no_args_is_help=True,
                  add_completion=False)
for _command in (apply, get, describe, delete, diff):
    _command.__doc__ = f"{_command.__doc__}\n\n{WHERE}"
    app.command()(_command)
app.add_typer(shadow_app, name="shadow")
app.add_typer(rollout_app, name="rollout")
