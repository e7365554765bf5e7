"""Self-upgrade of a native agent: install beside, boot once on trial, commit or roll back.

Why it exists: ``desired.sysapps.tether`` names the agent version a node should run
(``schemas.sysapps``); this is the native node's side of it. The steps, each recorded in
``DATA_DIR/agent/upgrade.json`` before it is taken (``home.Step``):

1. ``installing``: fetch the wheel, check its sha256, build ``venvs/VERSION`` beside the
   running venv (``installing``). Killed here: the next start (old version) cleans up and
   installs again, at most ``MAX_ATTEMPTS`` times (each attempt builds in a directory of its
   own, so a pip the killed agent left running spoils nothing).
2. ``trial``: the deadline is written, then the ``trial`` link (rename); the agent stops
   (its apps keep running) and execs the launcher, which boots the trial once.
3. The new version, on trial, counts as healthy once the cloud has acknowledged its report
   (``reported.sysapps.tether`` naming it, state ``Upgrading``): it then swaps ``current``
   to itself (rename) and removes ``trying`` -- committed. Not healthy by the deadline: it
   execs the launcher, which boots ``current``, the old version.
4. The old version, started while ``trying`` exists, knows the trial did not commit
   (crashed, killed, hung and killed by the launcher's watchdog, or gave up): it removes
   ``trying`` and reports ``RolledBack`` with the cause.

Killed with SIGKILL at any point, the node comes back (through its supervisor, which runs
the launcher) on one of the two versions, and the state file plus the links say which
step to finish. The apps keep running throughout: processes live in sessions of their
own, an exec keeps the agent's pid (they stay its children), and every agent adopts the
processes its pid files name.

``TETHER_EDGE_FAILPOINTS`` (comma-separated step names, each fires once per data dir)
makes the agent SIGKILL itself at that point: how the tests kill it at every step.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import ssl
import sys
import time
from collections.abc import Callable
from pathlib import Path

from edge_runtime.errors import UpgradeError
from edge_runtime.upgrading.base import UpgraderBase
from edge_runtime.upgrading.home import (
    LAUNCHER_ENV,
    WATCHDOG_GRACE_SECONDS,
    AgentHome,
    Step,
    UpgradeState,
)
from edge_runtime.upgrading.installing import build_venv, fetch_wheel, remove_partials
from schemas.sysapps import AgentReport, AgentState, AgentTarget

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
POLL_SECONDS = 0.2
FAILPOINTS_ENV = "TETHER_EDGE_FAILPOINTS"


class NativeUpgrader(UpgraderBase):
    """One native agent's side of ``sysapps.tether`` (see the module docstring).

    ``boot()`` runs before the agent starts; ``start()`` (``base.UpgraderBase``) once it
    runs.
    """

    def __init__(
        self, data_dir: Path, *, version: str, argv: list[str], prefix: Path | None = None,
        verify: ssl.SSLContext | bool = True, clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(version=version)
        self.home = AgentHome(data_dir)
        self.prefix = Path(prefix or sys.prefix).resolve()
        self._argv, self._verify, self._clock = argv, verify, clock
        self._state = self.home.load()

    # -- before the agent starts -----------------------------------------------------------
    def boot(self) -> list[str] | None:
        """Finish what a previous start left; the launcher's argv if this process must exec
        it instead of running (a trial to boot, or a managed node started some other way)."""
        home, state = self.home, self._state
        if home.points_at(home.trying, self.prefix):
            if home.points_at(home.current, self.prefix) and state is not None \
                    and state.step == Step.DONE:
                home.unlink(home.trying)  # committed; only the link was left
            else:
                self._candidate = True
                if state is None or state.step != Step.TRIAL:
                    self._state = UpgradeState(step=Step.TRIAL, key="", previous="",
                                               deadline=self._clock() + 120)
                log.info("agent %s on trial: it must report healthy by its deadline",
                         self.version)
            return None
        if home.trying.is_symlink():
            if home.current.is_symlink() and home.current.resolve() == home.trying.resolve():
                return self.launcher_argv()  # the trial committed, then was killed: run it
            self._roll_back(state)
            return None
        if state is not None and state.step == Step.TRIAL:
            if home.trial.is_symlink():
                return self.launcher_argv()  # the switch was cut short: boot the trial
            target = state.target.get("version", "")
            if target == self.version and home.points_at(home.current, self.prefix):
                self._finish(state, AgentState.RUNNING, "")  # killed while committing
            elif home.venv(target).is_dir() and target:
                home.link(home.trial, home.venv(target))  # killed before the link was made
                return self.launcher_argv()
            else:
                self._finish(state, AgentState.FAILED, f"the venv of {target} is gone")
        if state is not None and state.step == Step.INSTALLING:
            remove_partials(home.venvs)
        if home.managed and not os.environ.get(LAUNCHER_ENV) \
                and not home.points_at(home.current, self.prefix):
            return self.launcher_argv()
        return None

    def launcher_argv(self) -> list[str]:
        return [str(self.home.launcher), *self._argv]

    # -- while the agent runs (``base.UpgraderBase``'s parts) -----------------------------
    def _target_moved(self, key: str) -> None:
        state = self._state
        if state is not None and state.step == Step.DONE and state.key and state.key != key:
            state.key = ""
            self._save(state)

    def _progress(self) -> AgentReport:
        state, target = self._state, self._target
        if state is not None and state.step in (Step.INSTALLING, Step.TRIAL):
            return AgentReport(self.version, AgentState.UPGRADING,
                               str(state.target.get("version", "")))
        if (state is not None and target is not None and state.key == target.key
                and state.outcome in (AgentState.ROLLED_BACK.value, AgentState.FAILED.value)):
            return AgentReport(self.version, AgentState(state.outcome), target.version,
                               state.cause)
        if target is not None and target.version != self.version:
            return AgentReport(self.version, AgentState.UPGRADING, target.version)
        return AgentReport(self.version, AgentState.RUNNING)

    # -- the thread -------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._lock:
                if self._stopping:
                    return
                work = self._work()
                if work is None:
                    self._lock.wait(POLL_SECONDS if self._candidate else None)
                    continue
            try:
                work()
            except Exception:  # an upgrade must never take the agent down
                log.exception("the agent upgrade failed")
                with self._lock:
                    self._lock.wait(POLL_SECONDS * 25)

    def _work(self) -> Callable[[], None] | None:
        """What to do next, or None to wait (called with the lock held)."""
        if self._candidate:
            return self._check_trial
        target, state = self._target, self._state
        if target is None or target.version == self.version:
            return None
        if state is not None and state.key == target.key:
            if state.step == Step.DONE:
                return None  # rolled back or failed: not again while desired names it
            if state.step == Step.TRIAL:
                return None  # restarting
        return lambda: self._install(target)

    def _check_trial(self) -> None:
        state = self._state
        assert state is not None
        if self._healthy():
            failpoint(self.home, "healthy")
            self._commit(state)
        elif self._clock() > state.deadline:
            log.error("agent %s did not report healthy by its deadline; restarting into %s",
                      self.version, os.readlink(self.home.current)
                      if self.home.current.is_symlink() else "the previous version")
            self._candidate = False
            self._do_restart()

    def _commit(self, state: UpgradeState) -> None:
        home = self.home
        home.link(home.current, self.prefix)
        failpoint(home, "committed")
        home.unlink(home.trying)
        self._candidate = False
        self._finish(state, AgentState.RUNNING, "")
        self._prune(keep={self.prefix, home.venv(state.previous).resolve()})
        log.info("agent %s committed", self.version)
        self._changed()

    def _install(self, target: AgentTarget) -> None:
        home, previous = self.home, self._state
        attempts = previous.attempts + 1 if previous is not None and previous.key == target.key \
            else 1
        state = UpgradeState(step=Step.INSTALLING, target=target.to_json(), key=target.key,
                             previous=self.version, attempts=attempts)
        if attempts > MAX_ATTEMPTS:
            self._finish(state, AgentState.FAILED,
                         f"{MAX_ATTEMPTS} installs of {target.version} were cut short")
            self._changed()
            return
        self._save(state)
        self._changed()
        log.info("upgrading the agent from %s to %s", self.version, target.version)
        try:
            self._bootstrap()
            wheel = fetch_wheel(target, home.wheels, verify=self._verify)
            failpoint(home, "fetched")
            build_venv(self.prefix, wheel, home.venv(target.version), version=target.version)
            failpoint(home, "installed")
        except UpgradeError as exc:
            log.error("cannot upgrade the agent to %s: %s", target.version, exc)
            self._finish(state, AgentState.FAILED, str(exc))
            self._changed()
            return
        state.step, state.deadline = Step.TRIAL, self._clock() + target.deadline_seconds
        home.trial_seconds.write_text(f"{target.deadline_seconds + WATCHDOG_GRACE_SECONDS}\n")
        self._save(state)
        failpoint(home, "trial-marked")
        home.link(home.trial, home.venv(target.version))
        failpoint(home, "trial-linked")
        self._do_restart()

    def _bootstrap(self) -> None:
        """Make the node managed: launcher written, ``current`` naming the running venv."""
        home = self.home
        home.ensure()
        if home.current.is_symlink():
            return
        if sys.prefix == sys.base_prefix:
            raise UpgradeError(f"this agent does not run from a venv ({sys.prefix}): "
                               "install the node with install.sh to upgrade it")
        home.link(home.current, self.prefix)

    def _do_restart(self) -> None:
        if self._restart is None:
            log.error("this agent cannot restart itself (not started by `tether edge run`)")
            return
        self._restart(self.launcher_argv())

    def _roll_back(self, state: UpgradeState | None) -> None:
        home = self.home
        tried = os.readlink(home.trying) if home.trying.is_symlink() else "?"
        version = str(state.target.get("version", Path(tried).name)) if state else Path(tried).name
        late = state is not None and self._clock() > state.deadline
        cause = (f"version {version} did not report healthy within "
                 f"{state.target.get('deadlineSeconds', '?')} s" if late and state else
                 f"version {version} stopped during its trial")
        home.unlink(home.trying)
        log.error("rolled back to %s: %s", self.version, cause)
        if state is None:
            state = UpgradeState(step=Step.TRIAL, previous=self.version)
        self._finish(state, AgentState.ROLLED_BACK, cause)
        self._prune(keep={self.prefix})

    def _finish(self, state: UpgradeState, outcome: AgentState, cause: str) -> None:
        state.step, state.outcome, state.cause = Step.DONE, outcome.value, cause
        self._save(state)

    def _save(self, state: UpgradeState) -> None:
        self.home.save(state)
        self._state = state

    def _prune(self, *, keep: set[Path]) -> None:
        """Delete installed versions other than ``keep`` (the running one and its previous)."""
        try:
            venvs = list(self.home.venvs.iterdir())
        except OSError:
            return
        for venv in venvs:
            if venv.resolve() not in keep:
                shutil.rmtree(venv, ignore_errors=True)


def failpoint(home: AgentHome, name: str) -> None:
    """SIGKILL this process at ``name`` if ``TETHER_EDGE_FAILPOINTS`` names it (once)."""
    if name not in os.environ.get(FAILPOINTS_ENV, "").split(","):
        return
    marker = home.root / f".failpoint-{name}"
    if marker.exists():
        return
    marker.write_text("fired\n")
    log.warning("failpoint %s: killing this agent", name)
    os.kill(os.getpid(), signal.SIGKILL)
