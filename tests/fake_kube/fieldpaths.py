"""Field paths: the unit of ownership for server-side apply, and their ``fieldsV1`` form.

A path is a tuple of ``fieldsV1`` keys: ``("f:spec", "f:template", "f:spec",
"f:containers", 'k:{"name":"app"}', "f:image")``. An object's field set holds:

* every leaf: a scalar, a list that is not associative (``args``, ``rules``...; owned
  whole, as "atomic"), or an empty map;
* for each item of an associative list (``containers`` keyed by ``name``...), the path
  of the item itself, the ``.`` entry of ``fieldsV1``, so an item is kept while anyone
  owns it.

Maps are not owned themselves, only what is in them, so two managers can share
``metadata.labels`` key by key, as in Kubernetes. Which lists are associative and by which
key is looked up by field name (``LIST_KEYS``): a small, context-free approximation of the
``x-kubernetes-list-map-keys`` / ``patchMergeKey`` markers in the Kubernetes OpenAPI.
"""

from __future__ import annotations

import json
from typing import Any

Path = tuple[str, ...]

# field name -> candidate merge keys (the first one the item has is used)
LIST_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "env": ("name",),
    "volumes": ("name",),
    "volumeMounts": ("mountPath",),
    "volumeDevices": ("devicePath",),
    "ports": ("containerPort", "port"),  # container ports, then Service ports
    "imagePullSecrets": ("name",),
    "hostAliases": ("ip",),
    "ownerReferences": ("uid",),
    "conditions": ("type",),
    "resourceClaims": ("name",),
    "topologySpreadConstraints": ("topologyKey",),
}

# server-owned or identity fields that nobody "manages"
UNOWNED: frozenset[Path] = frozenset(
    {("f:apiVersion",), ("f:kind",)}
    | {
        ("f:metadata", f"f:{name}")
        for name in (
            "name", "namespace", "uid", "resourceVersion", "generation",
            "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
            "managedFields", "selfLink",
        )
    }
)


class _Item:
    """Marker value: the path names an associative-list item, not a leaf."""

    def __repr__(self) -> str:
        return "ITEM"


ITEM = _Item()
MISSING: Any = object()


def list_key(field: str, items: list[Any]) -> str | None:
    """The merge key of ``field`` if every item is a map that has it, else None (atomic)."""
    for key in LIST_KEYS.get(field, ()):
        if items and all(isinstance(item, dict) and key in item for item in items):
            return key
    return None


def item_segment(key: str, item: dict[str, Any]) -> str:
    return "k:" + json.dumps({key: item[key]}, sort_keys=True, separators=(",", ":"))


def field_set(obj: dict[str, Any]) -> dict[Path, Any]:
    """Every owned path of ``obj`` with its value (``ITEM`` for list items)."""
    found: dict[Path, Any] = {}

    def walk(value: Any, path: Path, field: str) -> None:
        if isinstance(value, dict) and value:
            for name, child in value.items():
                walk(child, (*path, f"f:{name}"), name)
            return
        if isinstance(value, list):
            key = list_key(field, value)
            if key is not None:
                for item in value:
                    item_path = (*path, item_segment(key, item))
                    found[item_path] = ITEM
                    for name, child in item.items():
                        walk(child, (*item_path, f"f:{name}"), name)
                return
        found[path] = value

    for name, child in obj.items():
        walk(child, (f"f:{name}",), name)
    return {path: value for path, value in found.items() if path not in UNOWNED}


def resolve(obj: Any, path: Path) -> Any:
    """The value at ``path`` in ``obj``, or ``MISSING``."""
    current = obj
    for segment in path:
        if segment.startswith("f:") and isinstance(current, dict):
            current = current.get(segment[2:], MISSING)
        elif segment.startswith("k:") and isinstance(current, list):
            wanted = json.loads(segment[2:])
            current = next(
                (
                    item
                    for item in current
                    if isinstance(item, dict) and all(item.get(k) == v for k, v in wanted.items())
                ),
                MISSING,
            )
        else:
            return MISSING
        if current is MISSING:
            return MISSING
    return current


def remove(obj: dict[str, Any], path: Path) -> None:
    """Delete the field or list item at ``path``; parents it leaves empty go too."""
    parent = resolve(obj, path[:-1]) if len(path) > 1 else obj
    segment = path[-1]
    if segment.startswith("f:") and isinstance(parent, dict):
        parent.pop(segment[2:], None)
    elif segment.startswith("k:") and isinstance(parent, list):
        item = resolve(obj, path)
        if item is not MISSING:
            parent.remove(item)
    else:
        return
    if len(path) > 1 and parent in ({}, []) and path[:-1] != ("f:metadata",):
        remove(obj, path[:-1])


def to_fields_v1(paths: set[Path]) -> dict[str, Any]:
    """Encode a path set as ``fieldsV1``: nested keys, ``.`` where a node is owned itself."""

    def node(prefix: Path) -> dict[str, Any]:
        depth = len(prefix)
        children = sorted({p[depth] for p in paths if len(p) > depth and p[:depth] == prefix})
        built: dict[str, Any] = {".": {}} if children and prefix in paths else {}
        for child in children:
            built[child] = node((*prefix, child))
        return built

    return node(())


def from_fields_v1(tree: dict[str, Any], prefix: Path = ()) -> set[Path]:
    paths: set[Path] = set()
    for segment, child in tree.items():
        if segment == ".":
            continue
        path = (*prefix, segment)
        if not child or "." in child:
            paths.add(path)
        paths |= from_fields_v1(child, path)
    return paths


def dotted(path: Path) -> str:
    """``.spec.template.spec.containers[name="app"].image``: the form used in messages."""
    text = ""
    for segment in path:
        if segment.startswith("f:"):
            text += "." + segment[2:]
        else:
            text += "[" + ",".join(
                f"{k}={json.dumps(v)}" for k, v in json.loads(segment[2:]).items()
            ) + "]"
    return text
