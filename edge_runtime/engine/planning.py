"""The engine's plan: what to do so that what runs matches what is desired. Pure.

The engine is level-triggered: on every pass it looks at the whole picture -- the apps
desired (name -> version), what the backend says runs, which resource versions are in the
cache and which are being fetched -- and ``plan`` answers with the actions that move the
node one step closer, never with a memory of what it did before:

- ``Remove(app)`` for every app that runs but is no longer desired;
- ``Fetch(app, items)`` for what a desired app still lacks: first its own spec (kind
  ``app`` at the desired version), then, once that is cached, every config, secret,
  certificate and registry version it pins. Items already in flight are not asked again,
  and one item is asked once per plan even when two apps need it;
- ``Apply(app, version)`` once the bundle -- the app and every pinned resource -- is
  complete in the cache and what runs is another version (or the backend lost track of
  it: status ``Unknown``);
- nothing for an app that already runs its desired version, or that is ``held`` (the
  shell holds an app whose fetch was refused or whose apply failed until its retry is due).

Fetches come first (they only publish, and answers take a round trip), then removals
(they free what the new versions may need, such as ports), then applies.

``desired_apps`` reads ``desired.apps`` off the shadow document, skipping malformed
entries. ``garbage`` is the cache's share of the same picture: which stored resource versions no
app needs any more. Keys are ``(kind, name, version)`` tuples, as ``cache.ResourceKey``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

from edge_runtime.backends.base import ObservedApp
from schemas.names import is_valid_name
from schemas.resources import AppStatus, ResourceKind

Key = tuple[str, str, str]
"""(kind, name, version) of one resource version; ``cache.ResourceKey`` is one."""


def desired_apps(raw: Any) -> tuple[dict[str, str], list[str]]:
    """``desired.apps`` as name -> version, and the entries skipped as malformed.

    A name must be a DNS-1123 label and a version a string of 1-64 characters; anything
    that is not an object counts as no apps.
    """
    if not isinstance(raw, dict):
        return {}, [] if raw is None else [repr(raw)[:80]]
    apps: dict[str, str] = {}
    skipped: list[str] = []
    for name, version in raw.items():
        if is_valid_name(name) and isinstance(version, str) and 0 < len(version) <= 64:
            apps[name] = version
        else:
            skipped.append(str(name))
    return apps, skipped


def app_key(name: str, version: str) -> Key:
    """The key of an app's own spec at ``version``."""
    return (ResourceKind.APP.value, name, version)


@dataclass(frozen=True)
class Fetch:
    """Ask the cloud for ``items`` (``resources/get``) on behalf of ``app``."""

    app: str
    items: tuple[Key, ...]


@dataclass(frozen=True)
class Apply:
    """Make the backend run ``version`` of ``app`` (its bundle is complete in the cache)."""

    app: str
    version: str


@dataclass(frozen=True)
class Remove:
    """Stop and delete everything of ``app``."""

    app: str


Action = Fetch | Apply | Remove


def matches(observed: ObservedApp | None, version: str) -> bool:
    """Whether what runs already is ``version`` (an app the backend lost track of is not)."""
    return (
        observed is not None
        and observed.version == version
        and observed.status is not AppStatus.UNKNOWN
    )


def missing(
    version_key: Key, *, available: AbstractSet[Key], needs: Mapping[Key, AbstractSet[Key]]
) -> list[Key]:
    """What the bundle of ``version_key`` still lacks, in order: the spec, then its pins."""
    if version_key not in available:
        return [version_key]
    return sorted(key for key in needs.get(version_key, ()) if key not in available)


def plan(
    desired: Mapping[str, str],
    observed: Mapping[str, ObservedApp],
    *,
    available: AbstractSet[Key],
    needs: Mapping[Key, AbstractSet[Key]],
    fetching: AbstractSet[Key] = frozenset(),
    held: AbstractSet[str] = frozenset(),
) -> list[Action]:
    """The actions that move ``observed`` towards ``desired``; [] when they match.

    ``needs`` maps every cached app version to the keys it pins; ``fetching`` holds the
    keys asked for and not answered yet; ``held`` the apps to leave alone for now.
    """
    fetches: list[Action] = []
    removals: list[Action] = [Remove(name) for name in sorted(observed.keys() - desired.keys())]
    applies: list[Action] = []
    asked = set(fetching)
    for name in sorted(desired):
        version = desired[name]
        if name in held or matches(observed.get(name), version):
            continue
        lacking = missing(app_key(name, version), available=available, needs=needs)
        if not lacking:
            applies.append(Apply(name, version))
            continue
        new = tuple(key for key in lacking if key not in asked)
        asked.update(new)
        if new:
            fetches.append(Fetch(name, new))
    return [*fetches, *removals, *applies]


def garbage(
    stored: Sequence[Key],
    *,
    in_use: Mapping[str, AbstractSet[str]],
    needs: Mapping[Key, AbstractSet[Key]],
    history: int = 2,
) -> list[Key]:
    """The stored keys no app needs: to drop from the cache.

    Kept: every version in ``in_use`` (app -> versions desired or running) and, for each
    of those apps, the ``history`` most recently stored other versions (a rollback while
    offline still finds them), all with the resources they pin. ``stored`` is in the order
    the keys were stored, oldest first.
    """
    kept_apps = {app_key(name, v) for name, versions in in_use.items() for v in versions}
    older: dict[str, list[Key]] = {}
    for key in stored:
        kind, name, _ = key
        if kind == ResourceKind.APP.value and name in in_use and key not in kept_apps:
            older.setdefault(name, []).append(key)
    for keys in older.values():
        kept_apps.update(keys[-history:] if history > 0 else ())
    kept = set(kept_apps)
    for key in kept_apps:
        kept.update(needs.get(key, ()))
    return [key for key in stored if key not in kept]
