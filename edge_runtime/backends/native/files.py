"""What a native app leaves on disk: its applied state, working dirs and mounted files.

``DATA_DIR/apps/{app}/app.json`` (0600) records what was applied -- the version and each
service's argv, env, working dir, replicas, mounts and digest -- so that a restarted
agent (or a rebooted node) knows what must run without asking the cloud or the cache,
and restarts nothing whose digest did not change. It is written atomically after the
files are in place and before the new processes start.

``materialize`` writes a service's mounts as ``rendering`` describes them: each file is
replaced atomically only when its content or mode differs, files a config or secret no
longer has are deleted, a mount that moved or went away is removed (``unmount``) and so
is the working dir of a service that went away (``remove_service``), so an old secret
never lingers on disk.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

from edge_runtime.backends.native.rendering import Mount, ServiceSpec
from edge_runtime.storage import atomic_write_bytes

STATE_FILENAME = "app.json"


def save_state(app_dir: Path, *, name: str, version: str, services: list[ServiceSpec]) -> None:
    """Record what ``app_dir`` runs (file contents are left out: they are on disk)."""
    body = {"name": name, "version": version,
            "services": [_stored(spec) for spec in services]}
    atomic_write_bytes(app_dir / STATE_FILENAME, json.dumps(body, indent=1).encode())


def load_state(app_dir: Path) -> tuple[str, list[ServiceSpec]] | None:
    """(version, services) recorded in ``app_dir``, or None if missing or unreadable."""
    try:
        body = json.loads((app_dir / STATE_FILENAME).read_text())
        services = [
            ServiceSpec(name=s["name"], argv=list(s["argv"]), env=dict(s["env"]),
                        workdir=s["workdir"], replicas=int(s["replicas"]),
                        mounts=[Mount(m["volume"], m["path"], m["kind"], target=m.get("target", ""))
                                for m in s["mounts"]],
                        function=bool(s.get("function", False)), digest=s["digest"])
            for s in body["services"]
        ]
        return str(body["version"]), services
    except (OSError, ValueError, KeyError, TypeError):
        return None


def materialize(app_dir: Path, spec: ServiceSpec) -> None:
    """Create the working dir and write every mount of ``spec`` (raises OSError)."""
    (app_dir / spec.workdir).mkdir(parents=True, exist_ok=True)
    for mount in spec.mounts:
        _write_mount(app_dir / mount.path, mount)


def remove_service(app_dir: Path, spec: ServiceSpec) -> None:
    """Remove the working dir (mounts and all) and the logs of a service that went away."""
    _clear(app_dir / spec.workdir)
    for index in range(spec.replicas):
        for suffix in (".log", ".log.1"):
            (app_dir / "logs" / f"{spec.name}-{index}{suffix}").unlink(missing_ok=True)


def unmount(app_dir: Path, mount: Mount) -> None:
    """Remove what ``mount`` put on disk."""
    _clear(app_dir / mount.path)


def _write_mount(path: Path, mount: Mount) -> None:
    if mount.kind == "hostPath":
        if path.is_symlink() and os.readlink(path) == mount.target:
            return
        _clear(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(mount.target)
        return
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700 if mount.private else 0o755)
    if mount.kind == "emptyDir":
        return
    mode = 0o600 if mount.private else 0o644
    for name, content in mount.files.items():
        target, data = path / name, content.encode()
        if _same(target, data, mode=mode):
            continue
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        atomic_write_bytes(target, data, mode=mode)
    for entry in path.iterdir():
        if entry.name not in mount.files and (entry.is_symlink() or entry.is_file()):
            entry.unlink()


def _same(target: Path, data: bytes, *, mode: int) -> bool:
    try:
        if target.is_symlink() or not target.is_file():
            return False
        return (target.stat().st_mode & 0o777) == mode and target.read_bytes() == data
    except OSError:
        return False


def _clear(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def _stored(spec: ServiceSpec) -> dict[str, Any]:
    body = asdict(spec)
    body["mounts"] = [{k: v for k, v in m.items() if k != "files"} for m in body["mounts"]]
    return body
