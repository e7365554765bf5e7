"""The seam between shadow sync and whatever makes the node match its desired state.

``ShadowSync`` knows nothing about workloads: whenever the desired section changes (or
the agent starts with a cached one) it calls ``Reconciler.reconcile(desired)`` and takes
the returned dict as the node's full reported state. A reconciler whose work takes time
returns what is true right away and pushes later changes through the ``ReportSink`` it
was given (``EdgeAgent.report``), from any thread. Only the latest full state counts:
sync diffs it against what the cloud has.

The reconciler of a running agent is the engine (``edge_runtime.engine.Engine``): it
reports ``node``, ``nodestats``, ``apps``, ``appstats`` and mirrors
``desired.properties`` once delivered to ``DATA_DIR/properties.json``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from schemas.shadow import JSONObject

ReportSink = Callable[[JSONObject], None]
"""Hands a new full reported state to sync (thread-safe when it is ``EdgeAgent.report``)."""


class Reconciler(Protocol):
    """Makes the node match a desired section; returns the full reported state."""

    def reconcile(self, desired: JSONObject) -> JSONObject:
        """Called in the sync thread; must not block for long and must not raise.

        ``desired`` must not be mutated. The result holds every reported key this node
        owns (``node``, ``properties``, ``apps``, ``appstats``, ``nodestats``): keys it
        leaves out are removed from the cloud's reported section.
        """
        ...
