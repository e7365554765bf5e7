"""``NativeBackend``: an app's services as supervised local processes (DESIGN §8).

``apply`` renders the bundle (``rendering``, pure), stops the processes whose spec
changed or that scale away, writes the mounted files (``files``), records the applied
state and starts what is missing; a new app version that changes nothing a process sees
restarts nothing. ``remove`` stops everything of the app -- SIGTERM to each process
group, SIGKILL after ``stop_grace_seconds`` -- and deletes its directory.

One supervisor thread polls every ``poll_seconds`` (0.5 s): a process that exited is
restarted with backoff (``supervising``), and every change is told to the engine through
the listener given to ``watch``. ``observe`` answers from memory, with each process's
cpu and memory read through psutil.

Processes survive the agent: ``close`` stops the supervisor only, and a new backend on the
same data dir adopts every live process its pid files name (``processes.find``), starts
the ones that are gone (after a reboot, say) and stops strays whose spec is outdated --
so restarting the agent, or killing it with SIGKILL, does not restart a healthy app.

Layout of ``DATA_DIR/apps/{app}/``: ``app.json`` (the applied state), ``{service}/``
(working dir, with mounts inside), ``run/{service}-{i}.pid``, ``logs/{service}-{i}.log``;
function runtimes announce themselves in ``DATA_DIR/functions/{app}/{service}/{i}.json``.
``remove`` deletes both. ``log_sources`` hands the log server those log files.
"""

from __future__ import annotations

import logging
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_runtime.backends.base import AppBundle, ObservedApp
from edge_runtime.backends.native import files
from edge_runtime.backends.native.processes import (
    PidRecord,
    Proc,
    find,
    read_pid,
    spawn,
    stop_all,
    write_pid,
)
from edge_runtime.backends.native.rendering import APPS_DIRNAME, ServiceSpec, render
from edge_runtime.backends.native.supervising import (
    Replica,
    RestartPolicy,
    app_status,
    exited,
    instance_status,
    settled,
    start_failed,
    started,
)
from edge_runtime.errors import BackendError
from edge_runtime.functions.directory import FUNCTIONS_DIRNAME
from edge_runtime.logs.sources import FileSource, LogSource
from schemas.names import is_valid_name
from schemas.resources import AppStatus

log = logging.getLogger(__name__)


@dataclass
class _App:
    name: str
    version: str
    services: dict[str, ServiceSpec] = field(default_factory=dict)
    replicas: dict[str, list[Replica]] = field(default_factory=dict)
    broken: str = ""  # why it cannot be supervised (status Unknown until applied again)

    def all_replicas(self) -> list[Replica]:
        return [replica for replicas in self.replicas.values() for replica in replicas]


class NativeBackend:
    """Runs apps as local processes under ``DATA_DIR/apps``."""

    name = "native"

    def __init__(
        self,
        data_dir: Path,
        *,
        stop_grace_seconds: float = 10.0,
        restart: RestartPolicy | None = None,
        poll_seconds: float = 0.5,
    ) -> None:
        self._data_dir = Path(data_dir)
        self.root = self._data_dir / APPS_DIRNAME
        self._grace, self._poll = stop_grace_seconds, poll_seconds
        self._policy = restart or RestartPolicy()
        self._lock = threading.RLock()
        self._apps: dict[str, _App] = {}
        self._listener: Callable[[], None] | None = None
        self._stopping = threading.Event()
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise BackendError(f"cannot create {self.root}: {exc}") from exc
        with self._lock:
            self._adopt_all()
        self._thread = threading.Thread(target=self._supervise_loop, daemon=True,
                                        name="tether-native-supervisor")
        self._thread.start()

    # -- Backend -----------------------------------------------------------------------
    def apply(self, bundle: AppBundle) -> None:
        app_dir = self._app_dir(bundle.name)
        specs = render(bundle, data_dir=self._data_dir)
        new = {spec.name: spec for spec in specs}
        with self._lock:
            current = self._apps.get(bundle.name) or _App(bundle.name, "")
            stopping: list[Replica] = []
            kept: dict[str, list[Replica]] = {}
            for service, replicas in current.replicas.items():
                spec, old = new.get(service), current.services.get(service)
                if spec is None or old is None or spec.digest != old.digest:
                    stopping += replicas
                else:
                    kept[service], extra = replicas[:spec.replicas], replicas[spec.replicas:]
                    stopping += extra
            self._stop(app_dir, stopping)
            try:
                for service, old in current.services.items():
                    if service not in new:
                        files.remove_service(app_dir, old)
                        announced = self._data_dir / FUNCTIONS_DIRNAME / bundle.name / service
                        shutil.rmtree(announced, ignore_errors=True)
                        continue
                    moved = {m.path for m in new[service].mounts}
                    for mount in old.mounts:
                        if mount.path not in moved:
                            files.unmount(app_dir, mount)
                for spec in specs:
                    files.materialize(app_dir, spec)
                files.save_state(app_dir, name=bundle.name, version=bundle.version, services=specs)
            except OSError as exc:
                services = {s: current.services[s] for s in kept}
                self._apps[bundle.name] = _App(bundle.name, "", services, kept,
                                               broken=f"apply failed: {exc}")
                raise BackendError(f"cannot write the files of app {bundle.name}: {exc}") from exc
            for spec in specs:
                replicas = kept.setdefault(spec.name, [])
                for index in range(len(replicas), spec.replicas):
                    replica = Replica(spec.name, index, spec.digest)
                    self._start(app_dir, spec, replica=replica)
                    replicas.append(replica)
            self._apps[bundle.name] = _App(bundle.name, bundle.version, new, kept)
        self._notify()

    def remove(self, app: str) -> None:
        app_dir = self._app_dir(app)
        with self._lock:
            current = self._apps.pop(app, None)
            if current is not None:
                self._stop(app_dir, current.all_replicas())
            try:
                for directory in (app_dir, self._data_dir / FUNCTIONS_DIRNAME / app):
                    if directory.exists():
                        shutil.rmtree(directory)
            except OSError as exc:
                raise BackendError(f"cannot delete {app_dir}: {exc}") from exc
        self._notify()

    def observe(self) -> dict[str, ObservedApp]:
        with self._lock:
            observed = {}
            for name, app in sorted(self._apps.items()):
                instances = tuple(instance_status(r, self._policy) for r in app.all_replicas())
                status, cause = app_status(instances)
                if app.broken:
                    status, cause = AppStatus.UNKNOWN, app.broken
                observed[name] = ObservedApp(name, app.version, status, cause, instances)
            return observed

    def node_facts(self) -> dict[str, Any]:
        return {}

    def log_sources(self, app: str, service: str | None = None) -> list[LogSource]:
        """The log file of each process of ``app`` (of ``service`` only, if given), in order;
        ``LookupError`` (one line) when the app or the service does not run here."""
        with self._lock:
            found = self._apps.get(app)
            if found is None:
                raise LookupError(f"app {app!r} does not run on this node")
            services = sorted(found.services.values(), key=lambda spec: spec.name)
        if service is not None:
            services = [spec for spec in services if spec.name == service]
            if not services:
                raise LookupError(f"app {app!r} has no service {service!r} on this node")
        logs = self.root / app / "logs"
        return [FileSource(logs / f"{spec.name}-{i}.log", name=f"{spec.name}-{i}")
                for spec in services for i in range(spec.replicas)]

    def watch(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (from the supervisor thread) whenever what runs changes."""
        self._listener = listener

    def close(self) -> None:
        """Stop supervising; the processes keep running for the next agent to adopt."""
        self._stopping.set()
        self._thread.join(self._poll + 5.0)

    # -- supervision -------------------------------------------------------------------
    def supervise(self) -> bool:
        """One look at every process: restart what exited, when due. True if anything changed."""
        changed, now = False, time.monotonic()
        with self._lock:
            for app in self._apps.values():
                app_dir = self.root / app.name
                for replica in app.all_replicas():
                    if replica.proc is not None:
                        how = replica.proc.poll()
                        if how is None:
                            changed |= settled(replica, now=now, policy=self._policy)
                            continue
                        replica.proc.signal(signal.SIGKILL)  # what is left of its group
                        exited(replica, how, now=now, policy=self._policy)
                        log.warning("app %s: process %s ended (%s); restarting in %.1f s", app.name,
                                    replica.name, how, (replica.restart_at or now) - now)
                        changed = True
                    elif replica.restart_at is not None and now >= replica.restart_at:
                        spec = app.services.get(replica.service)
                        if spec is not None:
                            self._start(app_dir, spec, replica=replica)
                            changed = True
        return changed

    def _supervise_loop(self) -> None:
        while not self._stopping.wait(self._poll):
            try:
                changed = self.supervise()
            except Exception:  # the supervisor must outlive any one bad process
                log.exception("the native supervisor failed")
                continue
            if changed:
                self._notify()

    # -- helpers -----------------------------------------------------------------------
    def _app_dir(self, app: str) -> Path:
        if not is_valid_name(app):
            raise BackendError(f"invalid app name {app!r}")
        return self.root / app

    def _start(self, app_dir: Path, spec: ServiceSpec, *, replica: Replica) -> None:
        now = time.monotonic()
        env = {**spec.env, "TETHER_REPLICA": str(replica.index)}
        try:
            (app_dir / spec.workdir).mkdir(parents=True, exist_ok=True)
            proc = spawn(spec.argv_of(replica.index), cwd=app_dir / spec.workdir, env=env,
                         log_path=app_dir / "logs" / f"{replica.name}.log")
        except OSError as exc:
            start_failed(replica, str(exc), now=now, policy=self._policy)
            log.warning("app %s: cannot start %s: %s", app_dir.name, replica.name, exc)
            return
        started(replica, proc, now=now)
        record = PidRecord(proc.pid, proc.create_time, replica.digest, replica.restarts)
        try:
            write_pid(app_dir / "run" / f"{replica.name}.pid", record)
        except OSError as exc:  # it runs; only a restarted agent will not find it
            log.error("app %s: cannot write the pid file of %s: %s",
                      app_dir.name, replica.name, exc)

    def _stop(self, app_dir: Path, replicas: list[Replica]) -> None:
        stop_all([r.proc for r in replicas if r.proc is not None], grace=self._grace)
        for replica in replicas:
            replica.proc, replica.restart_at = None, None
            (app_dir / "run" / f"{replica.name}.pid").unlink(missing_ok=True)

    def _notify(self) -> None:
        listener = self._listener
        if listener is not None:
            try:
                listener()
            except Exception:
                log.exception("a native backend listener failed")

    def _adopt_all(self) -> None:
        adopted = 0
        found = sorted(p for p in self.root.iterdir() if p.is_dir() and is_valid_name(p.name))
        for app_dir in found:
            records = {p.stem: read_pid(p) for p in (app_dir / "run").glob("*.pid")}
            state = files.load_state(app_dir)
            if state is None:
                strays = [proc for r in records.values() if r and (proc := find(r))]
                stop_all(strays, grace=self._grace)
                self._apps[app_dir.name] = _App(app_dir.name, "",
                                                broken="its applied state cannot be read")
                continue
            version, services = state
            app = _App(app_dir.name, version, {s.name: s for s in services})
            for spec in services:
                for index in range(spec.replicas):
                    replica = Replica(spec.name, index, spec.digest)
                    adopted += self._adopt(app_dir, spec, replica=replica,
                                          record=records.pop(replica.name, None))
                    app.replicas.setdefault(spec.name, []).append(replica)
            strays = [proc for r in records.values() if r and (proc := find(r))]
            stop_all(strays, grace=self._grace)
            for stem in records:
                (app_dir / "run" / f"{stem}.pid").unlink(missing_ok=True)
            self._apps[app.name] = app
        if self._apps:
            log.info("native backend: %d apps found, %d running processes adopted",
                     len(self._apps), adopted)

    def _adopt(
        self, app_dir: Path, spec: ServiceSpec, *, replica: Replica, record: PidRecord | None
    ) -> int:
        proc: Proc | None = find(record) if record is not None else None
        if proc is not None and record is not None and record.digest == spec.digest:
            replica.proc, replica.restarts = proc, record.restarts
            replica.started_at = time.monotonic() - max(0.0, time.time() - proc.create_time)
            return 1
        if proc is not None:
            stop_all([proc], grace=self._grace)
        self._start(app_dir, spec, replica=replica)
        return 0
