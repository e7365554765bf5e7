"""The edge agent: identity, cache, backend, engine, MQTT link and sync wired into one object.

``EdgeAgent(settings).start()`` returns at once: it loads the identity, takes the data
dir's lock (two agents on one cache would corrupt each other's view), creates the
backend (``create_backend``: a native backend adopts the processes a previous agent left
running), reconciles the cached desired state before any network (a node that restarts
with no broker reachable keeps running what it last ran, from the cached resources),
then starts the sync thread, the engine thread and the MQTT link, which keeps trying to
connect with backoff. ``stop()`` stops the engine, reports a pending state if it can,
publishes the retained offline status, disconnects and closes the backend -- whose
workloads keep running. ``run()`` is what ``tether edge run`` calls: start, wait for
SIGTERM or SIGINT, stop.

Self-upgrade (``edge_runtime.upgrading``): an ``Upgrader`` sees every desired section before
the engine and adds ``reported.sysapps`` to every report. Before anything else, ``start``
lets it finish what a previous process left (a trial to boot makes ``run()`` exec the
launcher at once); when it has installed a new version, it asks ``run()`` to stop cleanly
-- apps keep running -- and exec the launcher, which boots the new version in this pid.

Threads: the sync thread (``SyncRunner``) owns ``ShadowSync`` and the cache; the engine
thread plans and acts; the MQTT network thread and the native supervisor only post events.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import ssl
import threading
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from edge_runtime.backends import create_backend
from edge_runtime.backends.base import Backend
from edge_runtime.cache import Cache
from edge_runtime.collectors import NodeStats
from edge_runtime.engine import Engine
from edge_runtime.errors import AlreadyRunning, EdgeError
from edge_runtime.events.recording import EventRecorder
from edge_runtime.functions.directory import FUNCTIONS_DIRNAME, FunctionDirectory
from edge_runtime.functions.errors import ProxyError
from edge_runtime.functions.invoking import FunctionInvoker
from edge_runtime.functions.proxy import FunctionProxy
from edge_runtime.identity import Identity, ensure_private_dir, load_identity
from edge_runtime.logs.serving import LogServer
from edge_runtime.logs.sources import LogReadable, LogSource
from edge_runtime.reconciling import Reconciler
from edge_runtime.runner import Report, SyncRunner
from edge_runtime.settings import EdgeSettings
from edge_runtime.stopping import LOCK_FILENAME
from edge_runtime.sync import MqttLink
from edge_runtime.syncing import ShadowSync
from edge_runtime.transport import LinkEvent
from edge_runtime.upgrading.wiring import (
    SysappsReconciler,
    Upgrader,
    running_version,
    sysapps_section,
)
from schemas.shadow import JSONObject
from schemas.sysapps import AgentState, reported_agent
from schemas.topics import Suffix

if TYPE_CHECKING:
    from edge_runtime.renewal import CertificateRenewer

log = logging.getLogger(__name__)



class DataDirLock:
    """An exclusive ``flock`` on ``DATA_DIR/agent.lock``, released when the process dies."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILENAME
        self._fd: int | None = None

    def acquire(self, *, wait_seconds: float = 0.0) -> None:
        """Take the lock; with ``wait_seconds``, wait that long for another agent to let go
        (a kube agent's new pod starts while the old one hands over)."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if time.monotonic() < deadline:
                    time.sleep(0.5)
                    continue
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
    """One edge node's agent process (``tether edge run``).

    ``backend`` replaces the one ``settings.backend`` names (the caller then owns and
    closes it); ``reconciler`` replaces the engine altogether (tests of the sync side).
    """

    def __init__(
        self,
        settings: EdgeSettings,
        *,
        reconciler: Reconciler | None = None,
        backend: Backend | None = None,
        identity: Identity | None = None,
    ) -> None:
        self.settings = settings
        self._reconciler = reconciler
        self._given_backend = backend
        self._identity = identity
        self._lock = DataDirLock(Path(settings.data_dir))
        self._cache: Cache | None = None
        self._runner: SyncRunner | None = None
        self.backend: Backend | None = None
        self.engine: Engine | None = None
        self.link: MqttLink | None = None
        self.renewer: CertificateRenewer | None = None  # with a certificate: renews it
        self.sync: ShadowSync | None = None
        self.proxy: FunctionProxy | None = None
        self.invoker: FunctionInvoker | None = None
        self.logs: LogServer | None = None  # answers logs/request
        self.events: EventRecorder | None = None  # publishes app events
        self.upgrader: Upgrader | None = None
        self.restart_argv: list[str] | None = None  # set: run() execs it after stopping
        self._stopping = threading.Event()
        self._can_restart = False  # only run() can exec

    def start(self) -> None:
        """Load, reconcile from the cache, then connect in the background (never blocks)."""
        data_dir = Path(self.settings.data_dir)
        identity = self._identity or load_identity(data_dir)
        ensure_private_dir(data_dir)
        self._lock.acquire(wait_seconds=self.settings.lock_wait_seconds)
        upgrader = self._make_upgrader(data_dir, identity)
        if upgrader is not None:
            try:
                argv = upgrader.boot()
            except Exception:  # an upgrade must never keep the agent from starting
                log.exception("the agent upgrade could not resume; running %s as is",
                              upgrader.version)
                argv = None
            if argv is not None and self._can_restart:
                log.info("restarting through %s", argv[0])
                self.restart_argv = argv
                self._lock.release()
                return
            self.upgrader = upgrader
        try:
            self._cache = Cache(data_dir)
            self._start_observability(identity)
            reconciler = self._reconciler or self._make_engine(data_dir, self._cache)
            if self.upgrader is not None:
                reconciler = SysappsReconciler(reconciler, self.upgrader)
            self._start_functions(data_dir, identity)
            assert self.invoker is not None and self.logs is not None
            self.link = MqttLink(identity, self.settings, deliver=self._deliver,
                                 on_invoke=self.invoker.submit, on_logs=self.logs.submit)
            self.sync = ShadowSync(
                self.link,
                self._cache,
                reconciler=reconciler,
                heartbeat_seconds=self.settings.heartbeat_seconds,
                request_timeout_seconds=self.settings.request_timeout_seconds,
                debounce_seconds=self.settings.report_debounce_seconds,
                on_resources=self.engine.on_resources if self.engine is not None else None,
            )
            if self.engine is not None:
                self.engine.bind(self.sync.request_resources)
            self._runner = SyncRunner(self.sync)
            self.sync.start()
        except BaseException:
            self._stop_observability()
            self._stop_functions()
            self._close_backend()
            self._close_storage()
            raise
        self._runner.start()
        if self.events is not None:
            self.events.start()
        if self.engine is not None:
            self.engine.start()
        if self.upgrader is not None:
            engine = self.engine
            self.upgrader.start(healthy=self._healthy,
                                restart=self._restart if self._can_restart else None,
                                changed=engine.wake if engine is not None else lambda: None)
        self.link.start()
        if identity.uses_certificate:
            # imported here: cryptography and httpx cost a password node ~30 MiB it never needs
            from edge_runtime.renewal import CertificateRenewer

            self.renewer = CertificateRenewer(identity, self.settings, on_renewed=self.link.reconnect)
            self.renewer.start()
        log.info("edge agent %s/%s started (backend %s, data dir %s)",
                 identity.namespace, identity.node, self.settings.backend, data_dir)

    def report(self, reported: JSONObject) -> None:
        """Hand a new full reported state to sync, from any thread (the ``ReportSink``)."""
        if self._runner is not None:
            self._runner.post(Report(reported))

    def stop(self) -> None:
        """Clean stop: last report and offline status out, disconnect, release the data dir.

        Workloads keep running: the next agent on this data dir picks them up.
        """
        if self.upgrader is not None:
            self.upgrader.stop()
        if self.engine is not None:
            self.engine.stop()
        if self._runner is not None:
            self._runner.stop()
        if self.renewer is not None:
            self.renewer.stop()
            self.renewer = None
        self._stop_observability()  # last events and "done" chunks go out while connected
        if self.link is not None:
            self.link.stop()
        self._stop_functions()
        self._close_backend()
        self._close_storage()
        self._runner = None

    def run(self) -> None:
        """Start, block until SIGTERM or SIGINT, then stop cleanly."""
        stopping = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            log.info("received %s, stopping", signal.Signals(signum).name)
            stopping.set()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        self._stopping = stopping
        self._can_restart = True
        try:
            self.start()
            ready = self.settings.ready_file is None or self.upgrader is not None
            while self.restart_argv is None and not stopping.wait(1.0):
                if not ready and self.sync is not None and self.sync.synced:
                    ready = True  # without an upgrader (which marks it), once synced
                    assert self.settings.ready_file is not None
                    self.settings.ready_file.write_text("ready\n")
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.stop()
        if self.restart_argv is not None:
            argv = self.restart_argv
            logging.shutdown()
            os.execv(argv[0], argv)  # same pid: the apps stay this process's children

    def _restart(self, argv: list[str]) -> None:
        """The upgrader's way to restart this process into ``argv`` (from its thread)."""
        self.restart_argv = argv
        self._stopping.set()

    def _healthy(self) -> bool:
        """An agent on trial is healthy once the cloud acknowledged its report."""
        sync, upgrader = self.sync, self.upgrader
        document = sync.document if sync is not None else None
        if sync is None or upgrader is None or not sync.synced or document is None:
            return False
        report = reported_agent(document.reported)
        return (report is not None and report.version == upgrader.version
                and report.state is AgentState.UPGRADING)

    def _make_upgrader(self, data_dir: Path, identity: Identity) -> Upgrader | None:
        settings = self.settings
        if not settings.self_upgrade or self._reconciler is not None:
            return None
        argv = ["run", "--data-dir", str(data_dir.resolve()), "--backend", settings.backend]
        if settings.backend == "kube":
            from edge_runtime.upgrading.kube import kube_upgrader

            try:
                return kube_upgrader(settings, version=running_version(), argv=argv)
            except EdgeError as exc:
                log.error("no self-upgrade on this node: %s", exc)
                return None
        from edge_runtime.upgrading.native import NativeUpgrader

        return NativeUpgrader(data_dir, version=running_version(), argv=argv,
                              verify=identity_verify(identity))

    def _make_engine(self, data_dir: Path, cache: Cache) -> Engine:
        settings = self.settings
        self.backend = self._given_backend or create_backend(settings)
        self.engine = Engine(
            self.backend,
            cache,
            sink=self.report,
            data_dir=data_dir,
            reconcile_seconds=settings.reconcile_seconds,
            stats_seconds=settings.stats_seconds,
            fetch_timeout_seconds=settings.request_timeout_seconds,
            stats=NodeStats(data_dir),
            on_observed=self.events.observed if self.events is not None else None,
            sections=sysapps_section(self.upgrader) if self.upgrader is not None else None,
        )
        return self.engine

    def _start_observability(self, identity: Identity) -> None:
        """The log server (answers ``logs/request``) and the event recorder (``events``)."""
        topics = self.settings.topics
        events_topic = topics.topic(identity.namespace, identity.node, Suffix.EVENTS)
        self.logs = LogServer(self._log_sources, publish=self._publish_result, topics=topics,
                              namespace=identity.namespace, node=identity.node)
        self.events = EventRecorder(
            publish=lambda body: self._publish_result(events_topic, body),
            connected=lambda: self.link is not None and self.link.connected,
        )

    def _log_sources(self, app: str, service: str | None) -> list[LogSource]:
        backend = self.backend
        if isinstance(backend, LogReadable):
            return backend.log_sources(app, service)
        raise LookupError(f"this node's backend cannot read logs (app {app!r})")

    def _stop_observability(self) -> None:
        events, self.events = self.events, None
        if events is not None:
            events.stop()
        logs, self.logs = self.logs, None
        if logs is not None:
            logs.close()

    def _start_functions(self, data_dir: Path, identity: Identity) -> None:
        """The function proxy (HTTP, for apps on this node) and the MQTT invoker behind it."""
        settings = self.settings
        self.proxy = FunctionProxy(
            FunctionDirectory(data_dir / FUNCTIONS_DIRNAME),
            host=settings.function_proxy_host,
            port=settings.function_proxy_port,
            timeout=settings.function_timeout_seconds,
            node=f"{identity.namespace}/{identity.node}",
        )
        try:
            self.proxy.start()
        except ProxyError as exc:  # functions still answer over MQTT; the node keeps running
            log.error("%s; set TETHER_EDGE_FUNCTION_PROXY_PORT to another port", exc)
        self.invoker = FunctionInvoker(
            self.proxy.caller,
            publish=self._publish_result,
            topics=settings.topics,
            namespace=identity.namespace,
            node=identity.node,
        )

    def _publish_result(self, topic: str, body: bytes) -> None:
        if self.link is not None:
            self.link.publish_raw(topic, body)

    def _stop_functions(self) -> None:
        invoker, self.invoker = self.invoker, None
        if invoker is not None:
            invoker.close()
        proxy, self.proxy = self.proxy, None
        if proxy is not None:
            proxy.stop()

    def _close_backend(self) -> None:
        backend, self.backend = self.backend, None
        if backend is not None and backend is not self._given_backend:
            backend.close()

    def _deliver(self, event: LinkEvent) -> None:
        if self._runner is not None:
            self._runner.post(event)

    def _close_storage(self) -> None:
        if self._cache is not None:
            self._cache.close()
            self._cache = None
        self._lock.release()


def identity_verify(identity: Identity) -> ssl.SSLContext | bool:
    """How to check the cloud's certificate: the system's CAs plus the node's CA, if any."""
    if identity.tls is None:
        return True
    context = ssl.create_default_context()
    try:
        context.load_verify_locations(cafile=str(identity.tls.cafile))
    except (OSError, ssl.SSLError) as exc:
        log.warning("cannot load %s: %s", identity.tls.cafile, exc)
    return context
