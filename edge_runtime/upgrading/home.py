"""Where a native agent's versions live, how one is chosen at start, and the upgrade's state.

Layout of ``DATA_DIR/agent/``::

    launch          the launcher (POSIX sh, written by the agent): the supervisor runs it
    current ->      the venv of the committed version (a symlink, swapped with rename)
    trial ->        a venv to boot once (made by the old agent right before it restarts)
    trying ->       the venv being tried (the launcher renames trial to this as it boots it)
    trial.seconds   how long the trial may take before the launcher's watchdog kills it
    trying.boot     which boot of the trial the watchdog is for
    venvs/VERSION/  installed versions (``VERSION.partial-*`` while being built)
    wheels/         downloaded wheels, checked against their sha256
    upgrade.json    the upgrade's state, written atomically at every step

The launcher runs ``python -I`` (isolated: neither ``PYTHONPATH`` nor the working directory
can put other code before the venv's). It holds the one rule that must not depend on the code being tried: a trial
version boots once. If it does not commit itself in time (crashes, hangs, fails its
health check, is killed), the next start finds ``trying`` and no ``trial`` and boots
``current``, the old version, whose code rolls back. The watchdog is started by the
launcher itself, in sh, so a trial that hangs before running any Python is killed too.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edge_runtime.storage import atomic_write_bytes, fsync_dir

AGENT_DIRNAME = "agent"
LAUNCHER_ENV = "TETHER_EDGE_LAUNCHER"
"""Set by the launcher for the agent it starts: that agent need not redirect through it."""
WATCHDOG_GRACE_SECONDS = 30
"""The launcher's watchdog waits this long past the deadline: a trial that gave up by itself
restarts through the launcher, and the old agent must have removed ``trying`` by then."""

LAUNCHER = """#!/bin/sh
# Starts the Tether edge agent of this data dir: a trial version once, else the current one.
# Written by the agent (edge_runtime.upgrading.home); a supervisor (systemd) restarts it.
root=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
TETHER_EDGE_LAUNCHER="$root/launch"
export TETHER_EDGE_LAUNCHER
if [ -L "$root/trial" ]; then
  rm -f "$root/trying"
  mv "$root/trial" "$root/trying" || exit 1
  boot="$(date +%s)-$$-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')"
  printf '%s\n' "$boot" > "$root/trying.boot"
  seconds=$(cat "$root/trial.seconds" 2>/dev/null || echo 150)
  pid=$$
  # the watchdog kills this boot only (the pid outlives it: every restart is an exec)
  ( ( sleep "$seconds"
      [ -L "$root/trying" ] && [ "$(cat "$root/trying.boot" 2>/dev/null)" = "$boot" ] \
        && kill -9 "$pid" ) </dev/null >/dev/null 2>&1 & )
  exec "$root/trying/bin/python" -I -m edge_runtime "$@"
fi
if [ ! -e "$root/current/bin/python" ]; then
  echo "tether: no agent venv at $root/current: reinstall the node" >&2
  exit 1
fi
exec "$root/current/bin/python" -I -m edge_runtime "$@"
"""


class Step:
    """Where an upgrade is; each is written to ``upgrade.json`` before it is taken."""

    INSTALLING = "installing"  # download, verify, build venvs/VERSION.partial
    TRIAL = "trial"  # venvs/VERSION complete; trial link made (or being made); restarting
    DONE = "done"  # finished: ``outcome`` says how


@dataclass
class UpgradeState:
    """The content of ``upgrade.json``."""

    step: str
    target: dict[str, Any] = field(default_factory=dict)  # AgentTarget.to_json()
    key: str = ""  # AgentTarget.key
    previous: str = ""  # the version upgraded from
    deadline: float = 0.0  # epoch seconds by which the trial must commit
    outcome: str = ""  # AgentState value once DONE
    cause: str = ""
    attempts: int = 0  # installs started for this key (a kill in between counts)


class AgentHome:
    """``DATA_DIR/agent``: paths, links and the state file (see the module docstring)."""

    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir).resolve() / AGENT_DIRNAME
        self.launcher = self.root / "launch"
        self.current = self.root / "current"
        self.trial = self.root / "trial"
        self.trying = self.root / "trying"
        self.trial_seconds = self.root / "trial.seconds"
        self.venvs = self.root / "venvs"
        self.wheels = self.root / "wheels"
        self.state_path = self.root / "upgrade.json"

    # -- the launcher and links -------------------------------------------------------
    def ensure(self) -> None:
        """Create the directory and (re)write the launcher if it differs."""
        self.venvs.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.wheels.mkdir(parents=True, exist_ok=True, mode=0o700)
        body = LAUNCHER.encode()
        try:
            if self.launcher.read_bytes() == body:
                return
        except OSError:
            pass
        atomic_write_bytes(self.launcher, body, mode=0o755)

    @property
    def managed(self) -> bool:
        """Whether the launcher exists (then it is the way this node's agent starts)."""
        return self.launcher.is_file() and self.current.is_symlink()

    def venv(self, version: str) -> Path:
        return self.venvs / version

    def link(self, name: Path, target: Path) -> None:
        """Point symlink ``name`` at ``target`` atomically (a new link, then rename)."""
        temporary = name.with_name(f".{name.name}.{secrets.token_hex(4)}")
        os.symlink(target, temporary)
        try:
            os.replace(temporary, name)
        except OSError:
            temporary.unlink(missing_ok=True)
            raise
        fsync_dir(name.parent)

    @staticmethod
    def points_at(link: Path, prefix: Path) -> bool:
        try:
            return link.is_symlink() and link.resolve() == prefix.resolve()
        except OSError:
            return False

    def unlink(self, link: Path) -> None:
        link.unlink(missing_ok=True)
        fsync_dir(link.parent)

    # -- state ------------------------------------------------------------------------
    def load(self) -> UpgradeState | None:
        try:
            body = json.loads(self.state_path.read_bytes())
            return UpgradeState(**body)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError):
            return None  # unreadable: treated as no upgrade in progress (links decide)

    def save(self, state: UpgradeState) -> None:
        body = json.dumps(asdict(state), sort_keys=True).encode()
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write_bytes(self.state_path, body, mode=0o600)

