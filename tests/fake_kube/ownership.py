"""Field ownership (``metadata.managedFields``) and server-side apply.

Granularity: the field paths of ``fieldpaths`` (leaves, atomic lists, associative-list
items; maps are shared key by key). Entries are keyed by (manager, operation,
subresource) like the real server, so one manager may hold an ``Apply`` and an ``Update``
entry side by side.

Apply, by manager M with configuration C:

* the fields of C become exactly M's ``Apply`` set (the previous set is replaced);
* a field of C whose live value differs from C's and that another entry owns is a
  conflict: 409 listing each (manager, field), unless ``force``, which takes the field
  from the other owners;
* a field equal in C and live is simply co-owned (no conflict);
* a field M applied before and omits now is removed from the object when no other entry
  owns it or anything below it; otherwise only M's ownership goes;
* C is folded into the live object with strategic-merge semantics (associative lists
  merge by key, atomic lists and scalars are replaced).

Any other write (create, PUT, merge/strategic/JSON patch) is an ``Update``: the fields it
adds or changes move to the writer's ``Update`` entry and leave every other entry; no
conflicts are raised, as in Kubernetes. After every write, entries lose the paths the
object no longer has and empty entries disappear. Writes to ``/status`` (and
``inject_status``) record a ``subresource: status`` entry over ``.status`` only; for types
with a status subresource, main-resource writes manage everything but ``.status``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.fake_kube import fieldpaths
from tests.fake_kube.fieldpaths import ITEM, MISSING, Path
from tests.fake_kube.merging import strategic_merge_patch
from tests.fake_kube.resources import ResourceType
from tests.fake_kube.statuses import apply_conflict

_STATUS: Path = ("f:status",)


@dataclass
class Entry:
    manager: str
    operation: str  # "Apply" | "Update"
    subresource: str  # "" | "status"
    api_version: str
    time: str
    paths: set[Path]

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.manager, self.operation, self.subresource)


def read_entries(obj: dict[str, Any]) -> list[Entry]:
    return [
        Entry(
            manager=raw.get("manager", ""),
            operation=raw.get("operation", "Update"),
            subresource=raw.get("subresource", ""),
            api_version=raw.get("apiVersion", ""),
            time=raw.get("time", ""),
            paths=fieldpaths.from_fields_v1(raw.get("fieldsV1", {})),
        )
        for raw in obj.get("metadata", {}).get("managedFields") or []
    ]


def write_entries(entries: list[Entry]) -> list[dict[str, Any]]:
    written = []
    for entry in entries:
        raw: dict[str, Any] = {
            "manager": entry.manager,
            "operation": entry.operation,
            "apiVersion": entry.api_version,
            "time": entry.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": fieldpaths.to_fields_v1(entry.paths),
        }
        if entry.subresource:
            raw["subresource"] = entry.subresource
        written.append(raw)
    return written


def scoped_fields(obj: dict[str, Any], rt: ResourceType, subresource: str) -> dict[Path, Any]:
    """The fields a write through ``subresource`` ("" or "status") can own."""
    fields = fieldpaths.field_set(obj)
    if not rt.status_subresource:
        return fields
    want_status = subresource == "status"
    return {p: v for p, v in fields.items() if (p[:1] == _STATUS) == want_status}


def _entry(entries: list[Entry], key: tuple[str, str, str], api_version: str, now: str) -> Entry:
    for entry in entries:
        if entry.key == key:
            entry.api_version, entry.time = api_version, now
            return entry
    entry = Entry(*key, api_version=api_version, time=now, paths=set())
    entries.append(entry)
    return entry


def prune(entries: list[Entry], obj: dict[str, Any]) -> list[Entry]:
    """Entries without the paths ``obj`` lacks; empty entries dropped."""
    present = set(fieldpaths.field_set(obj))
    for entry in entries:
        entry.paths &= present
    return [entry for entry in entries if entry.paths]


def record_update(
    old: dict[str, Any] | None,
    new: dict[str, Any],
    *,
    rt: ResourceType,
    manager: str,
    subresource: str,
    now: str,
) -> list[Entry]:
    """The entries of ``new`` after a non-apply write by ``manager`` turned ``old`` into it."""
    entries = read_entries(old) if old is not None else []
    before = scoped_fields(old, rt, subresource) if old is not None else {}
    after = scoped_fields(new, rt, subresource)
    changed = {
        path
        for path, value in after.items()
        if path not in before or (value is not ITEM and before[path] != value)
    }
    if changed:
        for entry in entries:
            entry.paths -= changed
        key = (manager, "Update", subresource)
        _entry(entries, key, rt.api_version, now).paths |= changed
    return prune(entries, new)


def apply(
    live: dict[str, Any],
    applied: dict[str, Any],
    *,
    rt: ResourceType,
    manager: str,
    subresource: str,
    force: bool,
    now: str,
) -> tuple[dict[str, Any], list[Entry]]:
    """Fold ``applied`` into ``live`` for ``manager``; the new object and its entries."""
    entries = read_entries(live)
    mine_key = (manager, "Apply", subresource)
    others = [entry for entry in entries if entry.key != mine_key]
    wanted = scoped_fields(applied, rt, subresource)
    conflicts: list[tuple[str, Path]] = []
    for path, value in wanted.items():
        current = fieldpaths.resolve(live, path)
        if value is ITEM or current is MISSING or current == value:
            continue
        conflicts += [(entry.manager, path) for entry in others if path in entry.paths]
    if conflicts and not force:
        name = live.get("metadata", {}).get("name", "")
        shown = sorted({(m, fieldpaths.dotted(p)) for m, p in conflicts})
        raise apply_conflict(rt, name, shown)
    for _, path in conflicts:
        for entry in others:
            entry.paths.discard(path)

    merged = strategic_merge_patch(live, applied)
    previous = next((e.paths for e in entries if e.key == mine_key), set())
    kept_by_others = set().union(*(entry.paths for entry in others))
    for path in sorted(previous - set(wanted), key=len):
        if not any(owned[: len(path)] == path for owned in kept_by_others):
            fieldpaths.remove(merged, path)
    _entry(entries, mine_key, rt.api_version, now).paths = set(wanted)
    return merged, prune(entries, merged)
