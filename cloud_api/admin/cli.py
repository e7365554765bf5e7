"""``tether apply|get|describe|delete|diff|shadow|rollout|audit|token|config|version``:
the kubectl-like admin client.

Thin, as every CLI here (STYLE §11): parse flags, call ``client``/``applying``, render
with ``views``. Every ``ClientError`` (refused request, unreachable server,
malformed manifest, bad config) is one line ``error: ...`` on stderr and exit 1.

The root ``tether.py`` mounts, at the top level: the commands ``apply``, ``get``,
``describe``, ``delete`` and the groups ``shadow_app`` (as ``shadow``) and
``rollout_app`` (as ``rollout``). ``app`` holds all of them, for tests and scripts.
"""

from __future__ import annotations

import difflib
import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cloud_api.admin import views
from cloud_api.admin.applying import FAILED, apply_manifests, delete_manifest, rollout_state
from cloud_api.admin.client import (
    ClientConfig,
    ClientError,
    Kind,
    TetherClient,
    kind_of,
    read_config,
    write_config,
)
from cloud_api.admin.manifests import (
    APPLY_ORDER,
    Manifest,
    ManifestError,
    parse_manifests,
    to_manifest,
)

WHERE = ("Server and token: --server/--token, else TETHER_SERVER/TETHER_TOKEN, else "
         "server:/token:/namespace: in $XDG_CONFIG_HOME/tether/config.yaml "
         "(~/.config/tether/config.yaml); the defaults are http://127.0.0.1:9080 and, "
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
OUTPUTS = ("table", "wide", "name", "yaml", "json")
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


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
            return _fetch(client, found, name, ns, selector, spread)

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
           dry_run: DryRun = "none", server: Server = None, token: Token = None,
           namespace: Namespace = None) -> None:
    """Delete an object (KIND NAME), or every object of manifest files (-f)."""
    with connected(server, token, namespace) as (client, ns), one_line_errors():
        client.dry_run = dry_run_of(dry_run)
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
        rollout = client.app_nodes(app_name, namespace=ns)
        if wait:
            rollout = _follow(client, app_name, ns, rollout, timeout=timeout, interval=interval)
        console().print(views.rollout_table(rollout))
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
            if state.done or state.failed or time.monotonic() >= deadline:
                return rollout
            time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
            rollout = client.app_nodes(app_name, namespace=namespace)


def diff(files: Files = None, server: Server = None, token: Token = None,
         namespace: Namespace = None) -> None:
    """Show what `apply -f` would change: a unified diff of each object's manifest, live
    against the file's. Exits 1 when something differs (as kubectl diff), 0 when not."""
    with connected(server, token, namespace) as (client, ns), one_line_errors():
        if not files:
            raise ManifestError("give a manifest file with -f FILE (or -f - for stdin)")
        differs = False
        for manifest in read_manifests(files, ns):
            live = client.find(manifest.kind.singular, manifest.name, namespace=manifest.namespace)
            text = _diff_of(manifest, live)
            if text:
                differs = True
                typer.echo(text)
        if differs:
            raise typer.Exit(code=1)


SEALED_FIELDS = {"Registry": "password", "Certificate": "privateKey"}


def _project(live: Any, wanted: Any) -> Any:
    """``live`` cut down to the keys ``wanted`` states (recursively): a diff shows what
    the file would change, not what the server fills in (defaults, pinned versions)."""
    if isinstance(live, dict) and isinstance(wanted, dict):
        return {key: _project(live.get(key), value) for key, value in wanted.items()
                if key in live or live.get(key) is not None}
    if isinstance(live, list) and isinstance(wanted, list) and len(live) == len(wanted):
        return [_project(item, want) for item, want in zip(live, wanted, strict=True)]
    return live


def _diff_of(manifest: Manifest, live: dict[str, Any] | None) -> str:
    """The unified diff of live against the file, over what the file states. Values the
    API never shows (secret values, passwords, keys) are compared by key only."""
    kind = manifest.kind
    body = dict(manifest.body)
    body.pop(SEALED_FIELDS.get(kind.name, ""), None)
    if kind.name == "Secret":
        body["keys"] = sorted(body.pop("data", {}) or {})
    wanted = to_manifest(kind, {**body, "namespace": manifest.namespace})
    wanted.pop("status", None)
    if kind.name == "Secret":
        wanted["spec"] = {"keys": body["keys"]}
    before: list[str] = []
    if live is not None:
        current = to_manifest(kind, live)
        if kind.name == "Secret":
            current["spec"] = {"keys": live.get("keys", [])}
        current = _project(current, wanted)
        before = views.dump(current, "yaml").splitlines()
    after = views.dump(wanted, "yaml").splitlines()
    if before == after:
        return ""
    return "\n".join(difflib.unified_diff(
        before, after, fromfile=f"live/{manifest.ref}", tofile=f"file/{manifest.ref}", lineterm=""))


def version(server: Server = None, token: Token = None, namespace: Namespace = None) -> None:
    """The client's version and the server's."""
    try:
        mine = package_version("tether")
    except PackageNotFoundError:
        mine = "unknown"
    typer.echo(f"Client Version: {mine}")
    with connected(server, token, namespace) as (client, _):
        typer.echo(f"Server Version: {client.server_version()}")


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
config_app = typer.Typer(help="The client config file: contexts.", no_args_is_help=True)


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


@config_app.command("get-contexts")
def config_get_contexts() -> None:
    """The contexts of the config file; * marks the current one."""
    with one_line_errors():
        _, config = read_config()
        current = config.get("current-context")
        table = views.Table(box=None, pad_edge=False, header_style="bold")
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


app = typer.Typer(help="Manage a Tether cloud over its REST API. " + WHERE, no_args_is_help=True)
for _command in (apply, get, describe, delete, diff, version, audit):
    _command.__doc__ = f"{_command.__doc__}\n\n{WHERE}"
    app.command()(_command)
app.add_typer(shadow_app, name="shadow")
app.add_typer(rollout_app, name="rollout")
app.add_typer(token_app, name="token")
app.add_typer(config_app, name="config")
