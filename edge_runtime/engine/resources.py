"""The resource versions the engine can apply from: parsed, in memory, kept in the cache.

Everything an app version needs -- its spec and every config, secret, certificate and
registry version it pins -- is fetched once with ``resources/get`` and stored in the
cache's ``resources`` table under ``(kind, name, version)``; a version's content never
changes, so it never expires, it only becomes garbage when no app needs it. Offline, and
after a restart, the engine builds bundles from here alone.

Threads: the cache belongs to the sync thread (TinyDB is not thread-safe), so ``put`` and
``drop`` are called there only -- from the ``resources/get`` answer handler and the
reconciler hook, both of which the sync thread runs -- while the engine thread reads the
parsed models kept here in memory, under a lock. What the cloud sends is validated with
the ``schemas`` models before it is stored; a cached value that no longer parses (a
schema change between releases) is dropped at load, and fetched again if still needed.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from edge_runtime.backends.base import AppBundle
from edge_runtime.cache import Cache, ResourceKey
from edge_runtime.engine.planning import Key, app_key
from edge_runtime.errors import BackendError
from schemas.resources import (
    App,
    Certificate,
    Config,
    Model,
    Registry,
    ResourceItem,
    ResourceKind,
    Secret,
)
from schemas.shadow import JSONObject

log = logging.getLogger(__name__)

_MAX_ERROR = 200


@dataclass(frozen=True)
class Parsed:
    """One item of a ``resources/get`` answer: its model, or why it was refused."""

    key: Key
    model: Model | None
    value: JSONObject | None
    error: str = ""


def describe(key: Key) -> str:
    kind, name, version = key
    return f"{kind} {name}@{version}"


def parse_item(raw: Any) -> Parsed | None:
    """Validate one answered item; None when it does not even say what it is."""
    if not isinstance(raw, dict):
        return None
    kind, name, version = raw.get("kind"), raw.get("name"), raw.get("version")
    if not (isinstance(kind, str) and isinstance(name, str) and isinstance(version, str)):
        return None
    key = (kind, name, version)
    try:
        item = ResourceItem.model_validate(raw)
        if item.value is None:
            return Parsed(key, None, None, f"the cloud sent {describe(key)} without a value")
        model = item.parsed()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "value"
        message = f"the cloud sent an invalid {describe(key)}: {where}: {first['msg']}"
        return Parsed(key, None, None, message[:_MAX_ERROR])
    if getattr(model, "name", None) != name:
        return Parsed(key, None, None, f"the cloud sent {describe(key)} under another name")
    return Parsed(key, model, item.value)


def parse_items(raw: Any) -> list[Parsed]:
    """Every identifiable item of an answer's ``items`` (anything else is skipped)."""
    if not isinstance(raw, list):
        return []
    return [parsed for entry in raw if (parsed := parse_item(entry)) is not None]


def pins(app: App) -> frozenset[Key]:
    """The keys of every resource version ``app`` pins."""
    return frozenset((kind.value, ref.name, ref.version) for kind, ref in app.references())


class ResourceStore:
    """Parsed resource versions by key, mirrored from and into the cache."""

    def __init__(self, cache: Cache) -> None:
        self._cache = cache
        self._lock = threading.Lock()
        self._models: dict[Key, Model] = {}  # in the order stored, oldest first
        broken: list[Key] = []
        for stored in cache.resource_keys():
            key: Key = (stored.kind, stored.name, stored.version)
            parsed = parse_item({"kind": key[0], "name": key[1], "version": key[2],
                                 "value": cache.resource(stored)})
            if parsed is None or parsed.model is None:
                broken.append(key)
            else:
                self._models[key] = parsed.model
        for key in broken:
            log.warning("dropped the cached %s: it no longer parses", describe(key))
            cache.drop_resource(ResourceKey(*key))
        self._needs = self._compute_needs()

    # -- reads, any thread -------------------------------------------------------------
    def keys(self) -> frozenset[Key]:
        with self._lock:
            return frozenset(self._models)

    def stored(self) -> list[Key]:
        with self._lock:
            return list(self._models)

    def needs(self) -> dict[Key, frozenset[Key]]:
        """What every cached app version pins."""
        with self._lock:
            return dict(self._needs)

    def bundle(self, name: str, version: str) -> AppBundle:
        """The complete bundle of ``name`` at ``version``; BackendError if it cannot be."""
        with self._lock:
            app = self._models.get(app_key(name, version))
            if not isinstance(app, App):
                raise BackendError(f"app {name}@{version} is not in the cache")
            found: dict[ResourceKind, dict[str, Model]] = {kind: {} for kind in ResourceKind}
            versions: dict[tuple[ResourceKind, str], str] = {}
            for kind, ref in app.references():
                model = self._models.get((kind.value, ref.name, ref.version))
                if model is None:
                    raise BackendError(
                        f"app {name}@{version} lacks {kind.value} {ref.name}@{ref.version}")
                if versions.setdefault((kind, ref.name), ref.version) != ref.version:
                    raise BackendError(
                        f"app {name}@{version} pins two versions of {kind.value} {ref.name}")
                found[kind][ref.name] = model
        return AppBundle(
            app=app,
            version=version,
            configs={n: m for n, m in found[ResourceKind.CONFIG].items() if isinstance(m, Config)},
            secrets={n: m for n, m in found[ResourceKind.SECRET].items() if isinstance(m, Secret)},
            certificates={n: m for n, m in found[ResourceKind.CERTIFICATE].items()
                          if isinstance(m, Certificate)},
            registries={n: m for n, m in found[ResourceKind.REGISTRY].items()
                        if isinstance(m, Registry)},
        )

    # -- writes, sync thread only ------------------------------------------------------
    def put(self, parsed: Parsed) -> None:
        """Store a valid answered item in the cache and in memory."""
        assert parsed.model is not None and parsed.value is not None
        self._cache.put_resource(ResourceKey(*parsed.key), parsed.value)
        with self._lock:
            self._models[parsed.key] = parsed.model
            self._needs = self._compute_needs()

    def drop(self, keys: list[Key]) -> None:
        for key in keys:
            self._cache.drop_resource(ResourceKey(*key))
        with self._lock:
            for key in keys:
                self._models.pop(key, None)
            self._needs = self._compute_needs()

    def _compute_needs(self) -> dict[Key, frozenset[Key]]:
        return {key: pins(model) for key, model in self._models.items() if isinstance(model, App)}
