"""The launcher, run for real with stand-in venvs: a trial boots once, then ``current``;
its watchdog kills a trial that hangs past its time, and only that boot."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from edge_runtime.upgrading.home import AgentHome


def venv(home: AgentHome, version: str, body: str) -> Path:
    python = home.venv(version) / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f"#!/bin/sh\necho {version} \"$@\" >> \"{home.root}/booted\"\n{body}\n")
    python.chmod(0o755)
    return home.venv(version)


def launch(home: AgentHome) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([str(home.launcher), "run", "--data-dir", "/d"], timeout=20,
                          check=False)


def test_a_trial_boots_once_then_current(tmp_path: Path) -> None:
    home = AgentHome(tmp_path)
    home.ensure()
    home.link(home.current, venv(home, "1.0", "exit 0"))
    home.link(home.trial, venv(home, "2.0", "exit 3"))
    home.trial_seconds.write_text("1\n")  # its watchdog ends soon after
    assert launch(home).returncode == 3  # the trial, which failed
    assert not home.trial.exists() and home.points_at(home.trying, home.venv("2.0"))
    assert launch(home).returncode == 0  # then the current version
    booted = (home.root / "booted").read_text().splitlines()
    assert booted == ["2.0 -I -m edge_runtime run --data-dir /d",
                      "1.0 -I -m edge_runtime run --data-dir /d"]


def test_the_watchdog_kills_a_hanging_trial(tmp_path: Path) -> None:
    home = AgentHome(tmp_path)
    home.ensure()
    home.link(home.current, venv(home, "1.0", "exit 0"))
    home.link(home.trial, venv(home, "2.0", "exec sleep 30"))
    home.trial_seconds.write_text("1\n")
    started = time.monotonic()
    assert launch(home).returncode == -9
    assert time.monotonic() - started < 10


def test_the_watchdog_spares_a_later_boot(tmp_path: Path) -> None:
    home = AgentHome(tmp_path)
    home.ensure()
    home.link(home.current, venv(home, "1.0", "exit 0"))
    # the trial rewrites its boot id (as a new trial of the same pid would), then waits
    # past its watchdog's time: not killed
    home.link(home.trial, venv(home, "2.0",
                               f"echo other > {home.root}/trying.boot; sleep 3; exit 0"))
    home.trial_seconds.write_text("1\n")
    assert launch(home).returncode == 0
