"""Applying manifests through the client, and judging a rollout: the admin CLI's library.

Why it exists: ``tether apply`` must be idempotent (an unchanged object is reported as
``unchanged`` and written by no one), ``delete -f`` must mirror it, and ``rollout status``
must decide "done", "failed" or "still going" the same way for a script as for the CLI;
so those decisions live here, not in the typer commands.

- Namespaces: created if missing, else unchanged (they have no content).
- Nodes: created if missing, many at once through ``nodes:bulk`` (10,000 nodes take
  seconds, not minutes); else the labels/description that differ are PATCHed.
- Everything else: PUT (create or replace); the cloud makes a new version only when the
  content changed, so comparing version, labels and description before and after tells
  unchanged from configured, even for a secret whose values the API never shows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from cloud_api.admin.client import ClientError, TetherClient
from cloud_api.admin.manifests import Manifest, node_changes, resource_unchanged
from schemas.labels import SelectorError, parse_selector

Warn = Callable[[str], None]

CREATED, CONFIGURED, UNCHANGED, DELETED, NOT_FOUND, FAILED = (
    "created", "configured", "unchanged", "deleted", "not found", "failed")
BULK = 1000  # nodes per nodes:bulk request (the server's limit)
DONE_STATUSES = frozenset({"Running", "Succeeded"})


def label_warnings(client: TetherClient, manifest: Manifest, before: dict[str, Any],
                   new_labels: dict[str, str]) -> list[str]:
    """What replacing a node's labels does to the apps that select it: one line per app
    that starts or stops selecting it (a label an app's selector uses is being replaced)."""
    old_labels = before.get("labels") or {}
    lines = []
    for app in client.list_all("app", namespace=manifest.namespace):
        try:
            selector = parse_selector(str(app.get("selector", "")))
        except SelectorError:
            continue
        was, will = selector.matches(old_labels), selector.matches(new_labels)
        if was != will:
            change = "no longer selects it" if was else "now selects it"
            lines.append(f"warning: {manifest.ref}: new labels replace labels app/{app.get('name')} "
                         f"selects by ({app.get('selector')!s}): it {change}")
    return lines


def apply_manifest(client: TetherClient, manifest: Manifest, warn: Warn | None = None) -> str:
    """Make the cloud hold ``manifest``; returns created, configured or unchanged."""
    kind, name, namespace = manifest.kind, manifest.name, manifest.namespace
    if not kind.namespaced:
        if client.find(kind.singular, name) is not None:
            return UNCHANGED
        client.create(kind.singular, {"name": name})
        return CREATED
    before = client.find(kind.singular, name, namespace=namespace)
    if not kind.replaceable:
        if before is None:
            client.create(kind.singular, manifest.body, namespace=namespace)
            return CREATED
        changes = node_changes(manifest, before)
        if not changes:
            return UNCHANGED
        if "labels" in changes and warn is not None:
            for line in label_warnings(client, manifest, before, changes["labels"]):
                warn(line)
        client.patch(kind.singular, name, changes, namespace=namespace)
        return CONFIGURED
    after = client.replace(kind.singular, name, manifest.body, namespace=namespace)
    if before is None:
        return CREATED
    return UNCHANGED if resource_unchanged(before, after) else CONFIGURED


def apply_manifests(
    client: TetherClient, manifests: Sequence[Manifest], warn: Warn | None = None
) -> Iterator[tuple[Manifest, str]]:
    """``apply_manifest`` for each, in order, but missing nodes are created in bulk first.

    Yields ``(manifest, outcome)``; an outcome ``failed: MESSAGE`` is a node the cloud
    refused (the others still apply)."""
    created = _create_missing_nodes(client, [m for m in manifests if m.kind.name == "Node"])
    for manifest in manifests:
        outcome = created.get((manifest.namespace, manifest.name)) if manifest.kind.name == "Node" else None
        yield manifest, outcome if outcome is not None else apply_manifest(client, manifest, warn)


def _create_missing_nodes(
    client: TetherClient, nodes: Sequence[Manifest]
) -> dict[tuple[str, str], str]:
    """Create the nodes of ``nodes`` that do not exist, ``BULK`` per request; what became
    of each one created or refused. Fewer than two nodes: nothing to gain, nothing done."""
    if len(nodes) < 2:
        return {}
    outcomes: dict[tuple[str, str], str] = {}
    by_namespace: dict[str, list[Manifest]] = {}
    for manifest in nodes:
        by_namespace.setdefault(manifest.namespace, []).append(manifest)
    for namespace, manifests in by_namespace.items():
        existing = {node["name"] for node in client.list_all("node", namespace=namespace)}
        missing = [m for m in manifests if m.name not in existing]
        for start in range(0, len(missing), BULK):
            chunk = missing[start : start + BULK]
            result = client.create_nodes([m.body for m in chunk], namespace=namespace)
            for manifest, item in zip(chunk, result["items"], strict=True):
                if item["status"] == "created":
                    outcomes[(namespace, manifest.name)] = CREATED
                elif item["status"] == "failed":
                    outcomes[(namespace, manifest.name)] = f"{FAILED}: {item.get('message')}"
                # "exists": created meanwhile by someone else; apply_manifest compares it
    return outcomes


def delete_manifest(client: TetherClient, manifest: Manifest) -> str:
    """Delete what ``manifest`` names; ``not found`` if it is already gone."""
    try:
        client.delete(manifest.kind.singular, manifest.name, namespace=manifest.namespace)
    except ClientError as exc:
        if exc.code == 404:
            return NOT_FOUND
        raise
    return DELETED


@dataclass(frozen=True)
class RolloutState:
    """How far a rollout got, from ``GET .../apps/{name}/nodes``."""

    matched: int
    updated: int
    waiting: tuple[str, ...]  # online nodes not yet running the desired version
    failed: tuple[str, ...]  # Failed, or in a restart loop: "NODE: cause"
    offline: tuple[str, ...]
    online_matched: int = 0  # the denominator waited for: matched nodes that are online
    online_updated: int = 0

    @property
    def done(self) -> bool:
        return not self.waiting and not self.failed


def _describe(node: dict[str, Any]) -> str:
    reported = node.get("reportedVersion") or "nothing"
    status = node.get("status") or "no status"
    return f"{node['node']} (runs {reported}, {status}; wants {node['desiredVersion']})"


RESTART_LOOP = 3  # restarts of an app that is not running: a crash loop, not a blip


def _failure(node: dict[str, Any]) -> str | None:
    restarts = node.get("restarts") or 0
    cause = node.get("cause") or "no cause reported"
    if node.get("status") == "Failed":
        return f"{_describe(node)}: {cause}"
    if restarts >= RESTART_LOOP and node.get("status") not in DONE_STATUSES:
        return f"{_describe(node)}: restart loop ({restarts} restarts): {cause}"
    return None


def rollout_state(rollout: dict[str, Any]) -> RolloutState:
    """Done when every matched online node reports the desired version Running (or
    Succeeded); a node reporting Failed, or restarting in a loop, fails the rollout;
    offline nodes are counted apart and not waited for."""
    waiting, failed, offline = [], [], []
    online_matched = online_updated = 0
    for node in rollout.get("nodes", []):
        failure = _failure(node)
        if node.get("online"):
            online_matched += 1
            online_updated += node.get("reportedVersion") == node.get("desiredVersion")
        if failure is not None:
            failed.append(failure)
        elif not node.get("online"):
            offline.append(node["node"])
        elif (node.get("reportedVersion") != node.get("desiredVersion")
              or node.get("status") not in DONE_STATUSES):
            waiting.append(_describe(node))
    counts = rollout.get("counts", {})
    return RolloutState(
        matched=int(counts.get("matched", 0)),
        updated=int(counts.get("updated", 0)),
        waiting=tuple(waiting),
        failed=tuple(failed),
        offline=tuple(offline),
        online_matched=online_matched,
        online_updated=online_updated,
    )
