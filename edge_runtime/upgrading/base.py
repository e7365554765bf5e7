"""What the native and the kube upgraders share: the target desired names, the thread that
acts on it, and the report.

Why it exists: both backends take ``desired.sysapps.tether`` the same way (a target, or why
it cannot be read), run one daemon thread that waits on the same condition, and report a
version on trial or a target that cannot be read in the same words; they differ in where
an upgrade's record lives (a state file beside the venvs; an annotation on the agent's
Deployment) and in the steps taken. A subclass supplies ``_loop`` (the thread's body),
``_progress`` (its report when it is neither on trial nor given a bad target) and
``_target_moved`` (what it forgets when desired names another target).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from schemas.shadow import JSONObject
from schemas.sysapps import (
    AgentReport,
    AgentState,
    AgentTarget,
    BadTarget,
    desired_target,
    mirrored,
)

Restart = Callable[[list[str]], None]


class UpgraderBase:
    """The ``wiring.Upgrader`` interface, but for ``boot``, over the subclass's three parts."""

    def __init__(self, *, version: str) -> None:
        self.version = version
        self._lock = threading.Condition()
        self._target: AgentTarget | None = None
        self._bad = ""  # why desired.sysapps.tether could not be read
        self._bad_version = ""  # the version it named, if any
        self._candidate = False  # this process is a version on trial
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._healthy: Callable[[], bool] = lambda: False
        self._restart: Restart | None = None
        self._changed: Callable[[], None] = lambda: None

    def start(self, *, healthy: Callable[[], bool], restart: Restart | None,
              changed: Callable[[], None]) -> None:
        """Once the agent runs: how to tell it is healthy, how to restart it (an exec, done
        by the agent's main thread) and whom to tell when the report changed."""
        self._healthy, self._restart, self._changed = healthy, restart, changed
        self._thread = threading.Thread(target=self._loop, name="tether-edge-upgrade",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(10.0)
        self._thread = None

    def desired(self, desired: JSONObject) -> None:
        """The desired section changed (sync thread): take its ``sysapps.tether``."""
        with self._lock:
            try:
                self._target, self._bad, self._bad_version = desired_target(desired), "", ""
            except BadTarget as exc:
                sysapps = desired.get("sysapps")
                value = sysapps.get("tether") if isinstance(sysapps, dict) else None
                version = value.get("version") if isinstance(value, dict) else None
                self._target, self._bad = None, str(exc)
                self._bad_version = version if isinstance(version, str) else ""
            self._target_moved(self._target.key if self._target is not None else "")
            self._lock.notify_all()

    def report(self) -> JSONObject:
        """``reported.sysapps.tether`` as of now; once the node runs the target, it mirrors
        the target's other fields too, so the shadow's delta is empty."""
        with self._lock:
            return mirrored(self._report(), self._target)

    def _report(self) -> AgentReport:
        if self._candidate:
            return AgentReport(self.version, AgentState.UPGRADING, self.version,
                               "on trial: commits once the cloud has its report")
        if self._bad:
            return AgentReport(self.version, AgentState.FAILED, self._bad_version, self._bad)
        return self._progress()

    # -- the subclass's parts (called with the lock held, but for ``_loop``) ---------------
    def _loop(self) -> None:
        raise NotImplementedError

    def _progress(self) -> AgentReport:
        raise NotImplementedError

    def _target_moved(self, key: str) -> None:
        """Desired now names the target of ``key`` ("": none): forget a finished upgrade
        of another, so the same target named again is a new attempt."""
        raise NotImplementedError
