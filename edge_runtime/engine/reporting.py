"""The node's full reported state, as the engine hands it to the sync's coalesced outbox.

DESIGN §5 sections, and where each comes from::

    node        static facts (``collectors.node_facts`` + the backend's), gathered once
                (asked again at every stats tick while the backend cannot answer)
    nodestats   usage, sampled every ``stats_seconds`` (``collectors.NodeStats``)
    properties  ``desired.properties`` mirrored once delivered (see below)
    sysapps     the agent's own version and upgrade (``sections``, from the upgrader)
    apps        app -> version the backend applied     } ``status.report_apps``
    appstats    per-app status, cause and instances    }

Properties are delivered to the node and exposed to apps as ``DATA_DIR/properties.json``:
written atomically (temp file, fsync, rename) whenever ``desired.properties`` changes,
``{}`` when desired has none, pretty-printed with sorted keys. Reported properties mirror
desired exactly; a node that cannot write the file logs the error and still mirrors them.

Every section is deep-copied: what is handed to the sink must never change afterwards.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path

from edge_runtime.backends.base import Backend, ObservedApp
from edge_runtime.collectors import node_facts
from edge_runtime.engine.status import Problem, Usage, report_apps, steady_usage
from edge_runtime.settings import PROPERTIES_FILENAME
from edge_runtime.storage import atomic_write_bytes
from schemas.shadow import JSONObject, json_equal

log = logging.getLogger(__name__)


class Reporter:
    """Composes the reported state and remembers what was last handed to the sink."""

    def __init__(
        self, backend: Backend, data_dir: Path, *, stats: Callable[[], JSONObject] | None = None,
        sections: Callable[[], JSONObject] | None = None,
    ) -> None:
        self.properties_path = Path(data_dir) / PROPERTIES_FILENAME
        self._stats, self._sections = stats, sections
        self._properties: JSONObject | None = None
        self._written: bytes | None = None
        self._nodestats: JSONObject | None = None
        self._usage: Usage = {}
        self._last: JSONObject | None = None
        self._backend = backend
        self._facts: JSONObject = {}
        self._facts_complete = False
        self._gather_facts()

    def _gather_facts(self) -> None:
        try:
            extra = self._backend.node_facts()
        except Exception as exc:  # noqa: BLE001 -- a booting cluster: retry next sample
            log.warning("the %s backend gave no node facts yet: %s", self._backend.name, exc)
            extra = {}
        else:
            self._facts_complete = True
        self._facts = node_facts(self._backend.name, extra=extra)

    def deliver_properties(self, properties: object) -> None:
        """Take ``desired.properties``: write the apps' file if it changed."""
        self._properties = copy.deepcopy(properties) if isinstance(properties, dict) else None
        data = json.dumps(self._properties or {}, sort_keys=True, indent=2).encode() + b"\n"
        if data == self._written:
            return
        try:
            atomic_write_bytes(self.properties_path, data, mode=0o644)
        except OSError as exc:
            log.error("cannot write %s: %s", self.properties_path, exc)
        else:
            self._written = data

    def sample(self) -> JSONObject | None:
        """Usage now (for ``nodestats``), or None; facts the backend could not give yet are
        asked again. Called by the engine thread, outside the engine's lock."""
        if not self._facts_complete:
            self._gather_facts()
        if self._stats is None:
            return None
        try:
            return self._stats()
        except Exception as exc:  # noqa: BLE001 -- usage is never worth a failed pass
            log.warning("cannot sample the node's usage: %s", exc)
            return None

    def compose(
        self,
        desired: Mapping[str, str],
        observed: Mapping[str, ObservedApp],
        *,
        problems: Mapping[str, Problem],
        waiting: Mapping[str, str],
        nodestats: JSONObject | None = None,
        refresh: bool = False,
    ) -> JSONObject:
        """The full reported state; ``refresh`` takes fresh usage numbers (a stats tick)."""
        if nodestats is not None:
            self._nodestats = nodestats
        apps, stats = report_apps(desired, observed, problems=problems, waiting=waiting)
        stats, self._usage = steady_usage(stats, self._usage, refresh=refresh)
        reported: JSONObject = {"node": copy.deepcopy(self._facts), "apps": apps, "appstats": stats}
        if self._nodestats is not None:
            reported["nodestats"] = copy.deepcopy(self._nodestats)
        if self._properties is not None:
            reported["properties"] = copy.deepcopy(self._properties)
        if self._sections is not None:
            reported.update(copy.deepcopy(self._sections()))
        return reported

    def changed(self, reported: JSONObject) -> bool:
        """Whether ``reported`` differs from what was last handed out (it now is the last)."""
        if self._last is not None and json_equal(reported, self._last):
            return False
        self._last = reported
        return True
