"""Manifests: kubectl-like YAML/JSON documents, turned into REST bodies and an apply plan.

Why it exists: ``tether apply`` and ``tether delete -f`` read the same files, and what a
file means (which object, which body, in which order, whether it changed) is pure
logic, tested without a server. The CLI does the I/O and the client the requests.

A manifest::

    kind: App                    # Node | App | Config | Secret | Certificate | Registry | Namespace
    metadata:
      name: web
      namespace: default         # the default; ignored for a Namespace
      labels: {tier: front}      # optional
      description: the web app   # optional
    spec:                        # the REST body's fields (camelCase), as in the API docs
      selector: site=paris
      services: [{name: web, image: nginx:1.27}]

becomes the REST body ``{"name": "web", "selector": ..., "services": [...],
"labels": {...}, "description": "..."}``. A file may hold several documents (``---`` in
YAML, or a JSON list); apply order is namespaces, then configs, secrets, certificates
and registries (what apps reference), then apps, then nodes; deletion goes in reverse.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from typing import Any

import yaml

from cloud_api.admin.client import DEFAULT_NAMESPACE, KINDS, ClientError, Kind, kind_of

APPLY_ORDER = {kind.name: index for index, kind in enumerate(KINDS)}
TOP_LEVEL = frozenset({"apiVersion", "kind", "metadata", "spec", "status"})  # status: ignored
# what the server sets: shown under ``status`` by ``get -o yaml``, never sent back
STATUS_FIELDS = frozenset({
    "namespace", "version", "createdAt", "updatedAt", "affectedNodes", "online", "lastSeen",
    "keys", "subject", "commonName", "issuer", "serial", "notBefore", "notAfter"})
INCOMPLETE = {"Secret": "its values are never shown: give spec.data to apply it",
              "Registry": "its password is never shown: give spec.password to apply it",
              "Certificate": "its key is never shown: give spec.privateKey to apply it"}
METADATA = frozenset({"name", "namespace", "labels", "description"})


class ManifestError(ClientError):
    """A document that is not a manifest: says which document of which file, and why."""

    def __init__(self, message: str) -> None:
        super().__init__(400, message)


@dataclass(frozen=True)
class Manifest:
    kind: Kind
    name: str
    namespace: str
    body: dict[str, Any] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        """``app/web``, as the CLI prints it."""
        return f"{self.kind.singular}/{self.name}"


def load_documents(text: str, *, source: str) -> list[Any]:
    """The documents of a YAML (multi-document) or JSON (object or list) text."""
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            loaded = json.loads(text)
        except ValueError as exc:
            raise ManifestError(f"{source}: not valid JSON: {exc}") from exc
        return loaded if isinstance(loaded, list) else [loaded]
    try:
        documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ManifestError(f"{source}: not valid YAML{at}: {problem}") from exc
    flat: list[Any] = []
    for document in documents:  # a YAML list of manifests is accepted as well
        flat.extend(document if isinstance(document, list) else [document])
    return flat


def parse_manifest(document: Any, *, where: str, default_namespace: str = DEFAULT_NAMESPACE) -> Manifest:
    if not isinstance(document, dict):
        raise ManifestError(f"{where}: expected a mapping with kind, metadata and spec")
    unknown = set(document) - TOP_LEVEL
    if unknown:
        raise ManifestError(f"{where}: unknown top-level field(s) {', '.join(sorted(unknown))} "
                            "(expected kind, metadata, spec, status)")
    word = document.get("kind")
    if not isinstance(word, str):
        raise ManifestError(f"{where}: missing 'kind'")
    try:
        kind = kind_of(word)
    except ClientError:
        names = ", ".join(k.name for k in KINDS)
        raise ManifestError(f"{where}: unknown kind {word!r} (expected one of {names})") from None
    metadata = document.get("metadata")
    if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str):
        raise ManifestError(f"{where}: metadata.name is required")
    extra = set(metadata) - METADATA
    if extra:
        raise ManifestError(f"{where}: unknown metadata field(s) {', '.join(sorted(extra))}")
    spec = document.get("spec") or {}
    if not isinstance(spec, dict):
        raise ManifestError(f"{where}: spec must be a mapping")
    if "name" in spec and spec["name"] != metadata["name"]:
        raise ManifestError(f"{where}: spec.name differs from metadata.name; leave it out")
    namespace = metadata.get("namespace", default_namespace)
    if not isinstance(namespace, str):
        raise ManifestError(f"{where}: metadata.namespace must be a string")
    body: dict[str, Any] = {**spec, "name": metadata["name"]}
    if kind.name == "Secret" and "data" not in spec:
        raise ManifestError(f"{where}: secret/{metadata['name']} has no spec.data "
                            "(`get -o yaml` never shows secret values): give them")
    if not kind.namespaced:
        if spec:
            raise ManifestError(f"{where}: a Namespace has no spec")
        return Manifest(kind, metadata["name"], "", body)
    for key in ("labels", "description"):
        if key in metadata:
            body[key] = metadata[key]
    return Manifest(kind, metadata["name"], namespace, body)


def parse_manifests(
    text: str, *, source: str, default_namespace: str = DEFAULT_NAMESPACE
) -> list[Manifest]:
    """Every manifest of a file, in apply order (stable within a kind)."""
    documents = load_documents(text, source=source)
    if not documents:
        raise ManifestError(f"{source}: no manifests found")
    manifests = [
        parse_manifest(document, where=f"{source}: document {index}", default_namespace=default_namespace)
        for index, document in enumerate(documents, start=1)
    ]
    return sorted(manifests, key=lambda manifest: APPLY_ORDER[manifest.kind.name])


def node_changes(manifest: Manifest, current: dict[str, Any]) -> dict[str, Any]:
    """The PATCH body that brings an existing node to its manifest ({} if none needed).

    A node's ``mode`` is chosen when it is created; a different one is an error."""
    wanted_mode = manifest.body.get("mode")
    if wanted_mode is not None and wanted_mode != current.get("mode"):
        raise ManifestError(f"{manifest.ref} runs in mode {current.get('mode')!r}; a node's mode "
                            "cannot change: delete and re-create it")
    return {key: manifest.body[key] for key in ("labels", "description")
            if key in manifest.body and manifest.body[key] != current.get(key)}


def resource_unchanged(before: dict[str, Any] | None, after: dict[str, Any]) -> bool:
    """True when a PUT left a resource as it was: same version, labels and description."""
    if before is None:
        return False
    return all(before.get(key) == after.get(key) for key in ("version", "labels", "description"))


def to_manifest(kind: Kind, item: dict[str, Any]) -> dict[str, Any]:
    """An object as the API returns it -> the manifest ``apply -f`` takes back: what the
    server sets goes under ``status`` (ignored by apply). Secrets, registries and
    certificates come back without their sealed values, so they need them added."""
    metadata: dict[str, Any] = {"name": item.get("name")}
    if kind.namespaced:
        metadata["namespace"] = item.get("namespace")
        for key in ("labels", "description"):
            if item.get(key):
                metadata[key] = item[key]
    spec = {key: value for key, value in item.items()
            if key not in STATUS_FIELDS | METADATA and value is not None}
    status = {key: value for key, value in item.items() if key in STATUS_FIELDS - {"namespace"}}
    if kind.name in INCOMPLETE:
        status["incomplete"] = INCOMPLETE[kind.name]
    manifest: dict[str, Any] = {"kind": kind.name, "metadata": metadata}
    if kind.namespaced:
        manifest["spec"] = spec
    if status:
        manifest["status"] = status
    return manifest


def dump_yaml(value: Any) -> str:
    text: str = yaml.safe_dump(value, sort_keys=False, allow_unicode=True)
    return text.rstrip("\n")


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


def manifest_diff(manifest: Manifest, live: dict[str, Any] | None) -> str:
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
        before = dump_yaml(current).splitlines()
    after = dump_yaml(wanted).splitlines()
    if before == after:
        return ""
    return "\n".join(difflib.unified_diff(
        before, after, fromfile=f"live/{manifest.ref}", tofile=f"file/{manifest.ref}", lineterm=""))
