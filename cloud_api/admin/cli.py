"""``tether apply|get|describe|delete|diff|shadow|rollout|audit|token|config|version``:
the kubectl-like admin client.

Thin, as every CLI here (STYLE §11): parse flags, call ``client``/``applying``, render
with ``views``. Every ``ClientError`` (refused request, unreachable server,
malformed manifest, bad config) is one line ``error: ...`` on stderr and exit 1.

The root ``tether.py`` mounts, at the top level: the commands ``apply``, ``get``,
``describe``, ``delete``, ``diff``, ``version`` and the groups ``shadow_app`` (as
``shadow``) and ``rollout_app`` (as ``rollout``); ``access`` holds ``audit`` and
``token``, ``contexts`` holds ``config``. ``app`` holds all of them, for tests and scripts.
Shared options and error handling: ``options``.
"""

from __future__ import annotations

import json
import sys
import time
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cloud_api.admin import history_views, views
from cloud_api.admin.access import audit, token_app
from cloud_api.admin.applying import FAILED, apply_manifests, delete_manifest, rollout_state
from cloud_api.admin.client import (
    ClientError,
    Kind,
    TetherClient,
    kind_of,
)
from cloud_api.admin.contexts import config_app
from cloud_api.admin.manifests import (
    APPLY_ORDER,
    Manifest,
    ManifestError,
    manifest_diff,
    parse_manifests,
    to_manifest,
)
from cloud_api.admin.options import (
    WHERE,
    AllNamespaces,
    DryRun,
    Files,
    Namespace,
    Output,
    Selector,
    Server,
    Token,
    connected,
    console,
    one_line_errors,
)

OUTPUTS = ("table", "wide", "name", "yaml", "json")
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")




def read_text(path: str) -> tuple[str, str]:
    """(text, name for messages) of a file, or of stdin for ``-``."""
    if path == "-":
        return sys.stdin.read(), "<stdin>"
    try:
        return Path(path).read_text(encoding="utf-8"), path
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"cannot read {path}: {exc}") from exc


def expand(paths: list[str]) -> list[str]:
    """Files as given; a directory becomes its manifest files, by name (not recursive)."""
    out: list[str] = []
    for path in paths:
        if path != "-" and Path(path).is_dir():
            found = sorted(str(p) for p in Path(path).iterdir()
                           if p.is_file() and p.suffix in MANIFEST_SUFFIXES)
            if not found:
                raise ManifestError(f"{path}: no *.yaml, *.yml or *.json files in it")
            out.extend(found)
        else:
            out.append(path)
    return out


def read_manifests(files: list[str], namespace: str) -> list[Manifest]:
    manifests: list[Manifest] = []
    for path in expand(files):
        text, source = read_text(path)
        manifests.extend(parse_manifests(text, source=source, default_namespace=namespace))
    return sorted(manifests, key=lambda manifest: APPLY_ORDER[manifest.kind.name])


def dry_run_of(value: str) -> bool:
    if value not in ("none", "server"):
        raise ClientError(400, f"--dry-run={value}: use --dry-run=server (or none)")
    return value == "server"


# -- commands --------------------------------------------------------------------------
def apply(files: Files = None, dry_run: DryRun = "none", server: Server = None,
          token: Token = None, namespace: Namespace = None) -> None:
    """Create or update the objects of manifest files or directories (YAML or JSON).

    Prints `KIND/NAME created|configured|unchanged|failed: why` for each; many nodes are
    created in bulk (1,000 per request). --dry-run=server: the server checks every write
    and stores none. Warns when new node labels change which apps select the node."""
    with connected(server, token, namespace) as (client, ns), one_line_errors():
        if not files:
            raise ManifestError("give a manifest file with -f FILE (or -f - for stdin)")
        client.dry_run = dry_run_of(dry_run)
        suffix = " (server dry run)" if client.dry_run else ""
        refused = 0
        def warn(line: str) -> None:
            typer.echo(line, err=True)

        for manifest, outcome in apply_manifests(client, read_manifests(files, ns), warn):
            typer.echo(f"{manifest.ref} {outcome}{suffix}")
            refused += outcome.startswith(FAILED)
        if refused:
            typer.echo(f"error: {refused} object(s) failed; the others were applied", err=True)
            raise typer.Exit(code=1)


def get(kind: Annotated[str, typer.Argument(help="nodes, apps, configs, secrets, certificates, registries or namespaces")],
        name: Annotated[str | None, typer.Argument(help="one object; all if left out")] = None,
        output: Output = "table", selector: Selector = None, all_namespaces: AllNamespaces = False,
        watch: Annotated[bool, typer.Option("--watch", "-w", help="then print changes as they happen")] = False,
        watch_interval: Annotated[float, typer.Option(help="seconds between polls with --watch")] = 2.0,
        watch_timeout: Annotated[float, typer.Option(help="stop watching after this many seconds; 0: never")] = 0.0,
        server: Server = None, token: Token = None, namespace: Namespace = None) -> None:
    """List objects of a kind (paged, filtered by the server), or show one.

    -o yaml and -o json print manifests that `apply -f` takes back (secret values, registry
    passwords and certificate keys are never shown, so those need them added)."""
    with connected(server, token, namespace) as (client, ns), one_line_errors():
        if output not in OUTPUTS:
            raise ClientError(400, f"unknown output {output!r}: use {', '.join(OUTPUTS)}")
        found = kind_of(kind)
        spread = all_namespaces and found.namespaced
        def fetch() -> list[dict[str, Any]]:
            items = _fetch(client, found, name, ns, selector, spread)
            if output == "wide" and found.plural == "nodes":  # each node's agent, per namespace
                agents = {each: client.agent_status(None, namespace=each)["nodes"]
                          for each in {str(item.get("namespace") or ns) for item in items}}
                items = [{**item, "agent": agents[str(item.get("namespace") or ns)]
                          .get(item.get("name"), {}).get("agent")} for item in items]
            return items

        items = fetch()
        _show(found, items, output, single=name is not None, spread=spread)
        if watch:
            _watch(found, items, fetch, output, spread=spread, interval=watch_interval,
                   timeout=watch_timeout)


def _fetch(client: TetherClient, found: Kind, name: str | None, ns: str, selector: str | None,
           spread: bool) -> list[dict[str, Any]]:
    if name:
        return [client.get(found.singular, name, namespace=ns)]
    if not spread:
        return client.list_all(found.singular, namespace=ns, selector=selector)
    items: list[dict[str, Any]] = []
    for each in client.list_all("namespace"):
        items += client.list_all(found.singular, namespace=each["name"], selector=selector)
    return items


def _show(found: Kind, items: list[dict[str, Any]], output: str, *, single: bool,
          spread: bool, header: bool = True) -> None:
    if output in ("table", "wide"):
        console().print(views.object_table(found.plural, items, wide=output == "wide",
                                           namespaces=spread, header=header))
    elif output == "name":
        for item in items:
            typer.echo(f"{found.singular}/{item.get('name')}")
    else:
        manifests = [to_manifest(found, item) for item in items]
        typer.echo(views.dump(manifests[0] if single else manifests, output))


def _watch(found: Kind, items: list[dict[str, Any]], fetch: Any, output: str, *, spread: bool,
           interval: float, timeout: float) -> None:
    """Poll every ``interval`` s; print each object that changed (and `deleted` lines)."""
    def key(item: dict[str, Any]) -> tuple[str, str]:
        return str(item.get("namespace", "")), str(item.get("name"))

    seen = {key(item): item for item in items}
    deadline = time.monotonic() + timeout if timeout > 0 else None
    try:
        while deadline is None or time.monotonic() < deadline:
            time.sleep(interval)
            now = {key(item): item for item in fetch()}
            changed = [item for k, item in now.items() if seen.get(k) != item]
            if changed:
                _show(found, changed, output, single=False, spread=spread, header=False)
            for gone in sorted(set(seen) - set(now)):
                typer.echo(f"{found.singular}/{gone[1]} deleted")
            seen = now
    except KeyboardInterrupt:
        return


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
           selector: Selector = None, dry_run: DryRun = "none", server: Server = None,
           token: Token = None, namespace: Namespace = None) -> None:
    """Delete an object (KIND NAME), those of a kind a selector matches (KIND -l SEL), or
    every object of manifest files (-f)."""
    with connected(server, token, namespace) as (client, ns), one_line_errors():
        client.dry_run = dry_run_of(dry_run)
        suffix = " (server dry run)" if client.dry_run else ""
        if files:
            for manifest in reversed(read_manifests(files, ns)):
                typer.echo(f"{manifest.ref} {delete_manifest(client, manifest)}{suffix}")
            return
        if kind is not None and name is None and selector:
            found = kind_of(kind)
            for item in client.list_all(found.singular, namespace=ns, selector=selector):
                client.delete(found.singular, item["name"], namespace=ns)
                typer.echo(f"{found.singular}/{item['name']} deleted{suffix}")
            return
        if kind is None or name is None:
            raise ClientError(400, "give KIND NAME, KIND -l SELECTOR, or -f FILE")
        client.delete(kind, name, namespace=ns)
        typer.echo(f"{kind_of(kind).singular}/{name} deleted{suffix}")


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
        typer.echo(f"{state.online_updated}/{state.online_matched} online nodes updated; "
                   f"{len(state.offline)} offline (not waited for)")
        if state.failed:
            raise ClientError(500, f"rollout of app/{app_name} failed on: {'; '.join(state.failed)}")
        if wait and not state.done:
            raise ClientError(0, f"rollout of app/{app_name} timed out after {timeout:g}s "
                              f"({state.online_updated}/{state.online_matched} online updated); "
                              f"waiting on: {'; '.join(state.waiting)}")
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
            progress.update(task, total=max(state.online_matched, 1),
                            completed=state.online_updated)
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


def diff(
    kind: Annotated[str | None, typer.Argument(
        help="with NAME: app, config, secret, certificate or registry")] = None,
    name: Annotated[str | None, typer.Argument(help="the object whose versions to compare")] = None,
    files: Files = None,
    old: Annotated[str | None, typer.Option("--from", help="the older version (default: the one before --to)")] = None,
    new: Annotated[str | None, typer.Option("--to", help="the newer version (default: the current one)")] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="text, yaml or json (versions)")] = "text",
    server: Server = None, token: Token = None, namespace: Namespace = None,
) -> None:
    """`diff -f FILE`: what `apply -f` would change, a unified diff of each object's manifest,
    live against the file's; exits 1 when something differs (as kubectl diff), 0 when not.
    `diff KIND NAME [--from N] [--to M]`: what changed between two stored versions of an
    object (a secret shows its key names only)."""
    with connected(server, token, namespace) as (client, ns), one_line_errors():
        if files and kind is None:
            differs = False
            for manifest in read_manifests(files, ns):
                live = client.find(manifest.kind.singular, manifest.name, namespace=manifest.namespace)
                text = manifest_diff(manifest, live)
                if text:
                    differs = True
                    typer.echo(text)
            if differs:
                raise typer.Exit(code=1)
            return
        if files or kind is None or name is None:
            raise ManifestError("give either -f FILE (what apply would change) or KIND NAME "
                                "(what changed between two versions), not both")
        body = client.diff(kind, name, old, new, namespace=ns)
        if output == "text":
            typer.echo("\n".join(history_views.diff_lines(body)))
        else:
            typer.echo(views.dump(body, output))


def version(server: Server = None, token: Token = None, namespace: Namespace = None) -> None:
    """The client's version and the server's."""
    try:
        mine = package_version("tether")
    except PackageNotFoundError:
        mine = "unknown"
    typer.echo(f"Client Version: {mine}")
    with connected(server, token, namespace) as (client, _):
        typer.echo(f"Server Version: {client.server_version()}")


app = typer.Typer(help="Manage a Tether cloud over its REST API. " + WHERE, no_args_is_help=True)
for _command in (apply, get, describe, delete, diff, version):
    _command.__doc__ = f"{_command.__doc__}\n\n{WHERE}"
    app.command()(_command)
app.add_typer(shadow_app, name="shadow")
app.add_typer(rollout_app, name="rollout")
app.add_typer(token_app, name="token")
app.add_typer(config_app, name="config")
app.command()(audit)
