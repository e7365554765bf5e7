"""The seam between shadow sync and whatever makes the node match its desired state.

``ShadowSync`` knows nothing about workloads: whenever the desired section changes (or
the agent starts with a cached one) it calls ``Reconciler.reconcile(desired)`` and takes
the returned dict as the node's full reported state. A reconciler whose work takes time
(the engine with its kube/native backends) returns what is true right away and pushes
later changes through the ``ReportSink`` it was given (``EdgeAgent.report``), from any
thread. Only the latest full state counts: sync diffs it against what the cloud has.

``StandInReconciler`` is the reconciler until the engine exists: it reports the node's
static facts under ``node`` and mirrors ``desired.properties`` into
``reported.properties`` exactly (a key removed from desired is removed from reported).
"""

from __future__ import annotations

import copy
import platform
import socket
import sys
from collections.abc import Callable
from typing import Any, Protocol

from schemas.shadow import JSONObject

ReportSink = Callable[[JSONObject], None]
"""Hands a new full reported state to sync (thread-safe when it is ``EdgeAgent.report``)."""


class Reconciler(Protocol):
    """Makes the node match a desired section; returns the full reported state."""

    def reconcile(self, desired: JSONObject) -> JSONObject:
        """Called in the sync thread; must not block for long and must not raise.

        ``desired`` must not be mutated. The result holds every reported key this node
        owns (``node``, ``properties``, later ``apps``, ``appstats``, ``nodestats``):
        keys it leaves out are removed from the cloud's reported section.
        """
        ...


def node_facts(backend: str) -> JSONObject:
    """Static facts about this machine, reported once under ``reported.node``."""
    uname = platform.uname()
    return {
        "hostname": socket.gethostname(),
        "os": uname.system.lower() or sys.platform,
        "arch": uname.machine,
        "kernel": uname.release,
        "python": platform.python_version(),
        "backend": backend,
    }


class StandInReconciler:
    """Reports node facts and mirrors desired properties; runs no workloads."""

    def __init__(self, *, backend: str, facts: JSONObject | None = None) -> None:
        self._facts = facts if facts is not None else node_facts(backend)

    def reconcile(self, desired: JSONObject) -> JSONObject:
        reported: dict[str, Any] = {"node": copy.deepcopy(self._facts)}
        properties = desired.get("properties")
        if isinstance(properties, dict):
            reported["properties"] = copy.deepcopy(properties)
        return reported
