"""The edge agent: identity, cache, MQTT link, sync and reconciler wired into one object.

``EdgeAgent(settings).start()`` returns at once: it loads the identity, takes the data
dir's lock (two agents on one cache would corrupt each other's view), reconciles the
cached desired state before any network (a node that restarts with no broker reachable
keeps running what it last ran), then starts the sync thread and the MQTT link, which
keeps trying to connect with backoff. ``stop()`` reports a pending state if it can,
publishes the retained offline status and disconnects. ``run()`` is what
``tether edge run`` calls: start, wait for SIGTERM or SIGINT, stop.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import threading
from pathlib import Path
from types import FrameType

from edge_runtime.cache import Cache
from edge_runtime.errors import AlreadyRunning
from edge_runtime.identity import Identity, ensure_private_dir, load_identity
from edge_runtime.reconciling import Reconciler, StandInReconciler
from edge_runtime.runner import Report, SyncRunner
from edge_runtime.settings import EdgeSettings
from edge_runtime.sync import MqttLink
from edge_runtime.syncing import ShadowSync
from edge_runtime.transport import LinkEvent
from schemas.shadow import JSONObject

log = logging.getLogger(__name__)

LOCK_FILENAME = "agent.lock"


class DataDirLock:
    """An exclusive ``flock`` on ``DATA_DIR/agent.lock``, released when the process dies."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILENAME
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            raise AlreadyRunning(
                f"another edge agent is running with the data dir {self.path.parent}"
            ) from exc
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class EdgeAgent:
    """One edge node's agent process (``tether edge run``)."""

    def __init__(
        self,
        settings: EdgeSettings,
        *,
        reconciler: Reconciler | None = None,
        identity: Identity | None = None,
    ) -> None:
        self.settings = settings
        self._reconciler = reconciler
        self._identity = identity
        self._lock = DataDirLock(Path(settings.data_dir))
        self._cache: Cache | None = None
        self._runner: SyncRunner | None = None
        self.link: MqttLink | None = None
        self.sync: ShadowSync | None = None

    def start(self) -> None:
        """Load, reconcile from the cache, then connect in the background (never blocks)."""
        data_dir = Path(self.settings.data_dir)
        identity = self._identity or load_identity(data_dir)
        ensure_private_dir(data_dir)
        self._lock.acquire()
        try:
            self._cache = Cache(data_dir)
            reconciler = self._reconciler or StandInReconciler(backend=self.settings.backend)
            self.link = MqttLink(identity, self.settings, deliver=self._deliver)
            self.sync = ShadowSync(
                self.link,
                self._cache,
                reconciler=reconciler,
                heartbeat_seconds=self.settings.heartbeat_seconds,
                request_timeout_seconds=self.settings.request_timeout_seconds,
                debounce_seconds=self.settings.report_debounce_seconds,
            )
            self._runner = SyncRunner(self.sync)
            self.sync.start()
        except BaseException:
            self._close_storage()
            raise
        self._runner.start()
        self.link.start()
        log.info("edge agent %s/%s started (backend %s, data dir %s)",
                 identity.namespace, identity.node, self.settings.backend, data_dir)

    def report(self, reported: JSONObject) -> None:
        """Hand a new full reported state to sync, from any thread (the ``ReportSink``)."""
        if self._runner is not None:
            self._runner.post(Report(reported))

    def stop(self) -> None:
        """Clean stop: last report and offline status out, disconnect, release the data dir."""
        if self._runner is not None:
            self._runner.stop()
        if self.link is not None:
            self.link.stop()
        self._close_storage()
        self._runner = None

    def run(self) -> None:
        """Start, block until SIGTERM or SIGINT, then stop cleanly."""
        stopping = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            log.info("received %s, stopping", signal.Signals(signum).name)
            stopping.set()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.start()
            while not stopping.wait(1.0):
                pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.stop()

    def _deliver(self, event: LinkEvent) -> None:
        if self._runner is not None:
            self._runner.post(event)

    def _close_storage(self) -> None:
        if self._cache is not None:
            self._cache.close()
            self._cache = None
        self._lock.release()
