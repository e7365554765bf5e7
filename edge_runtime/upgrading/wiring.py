"""How the agent drives an upgrader: the interface, the reconciler seam, the running version.

Why it exists: the engine knows apps, not the agent itself, and sync knows neither. The
agent puts an ``Upgrader`` beside the engine: ``SysappsReconciler`` hands it every desired
section on its way to the engine, and the engine's reporter asks it for
``reported.sysapps`` at every report, so the running version is always in the shadow.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from typing import Protocol

from edge_runtime.reconciling import Reconciler
from schemas.shadow import JSONObject
from schemas.sysapps import AGENT_KEY, SYSAPPS_KEY

UNKNOWN_VERSION = "0+unknown"


def running_version() -> str:
    """The version of the ``tether`` distribution this process runs."""
    try:
        return importlib.metadata.version("tether")
    except importlib.metadata.PackageNotFoundError:
        return UNKNOWN_VERSION


class Upgrader(Protocol):
    """One backend's way of running the agent version desired names."""

    version: str

    def boot(self) -> list[str] | None:
        """Before the agent starts: finish a previous step; an argv to exec instead, if any."""
        ...

    def start(self, *, healthy: Callable[[], bool],
              restart: Callable[[list[str]], None] | None,
              changed: Callable[[], None]) -> None: ...

    def stop(self) -> None: ...

    def desired(self, desired: JSONObject) -> None: ...

    def report(self) -> JSONObject: ...


class SysappsReconciler:
    """The ``Reconciler`` the sync sees: the upgrader takes desired first, then the engine."""

    def __init__(self, inner: Reconciler, upgrader: Upgrader) -> None:
        self._inner, self._upgrader = inner, upgrader

    def reconcile(self, desired: JSONObject) -> JSONObject:
        self._upgrader.desired(desired)
        return self._inner.reconcile(desired)


def sysapps_section(upgrader: Upgrader) -> Callable[[], JSONObject]:
    """The reported sections the upgrader owns, for the engine's reporter."""
    return lambda: {SYSAPPS_KEY: {AGENT_KEY: upgrader.report()}}
