"""The wheel of the Tether the cloud runs, served so that ``install.sh`` needs no index for it.

Why it exists: ``tether`` is published on no package index, and a node installed by
``install.sh`` should run the very version its cloud runs. So the cloud packs itself:
every top-level module of the ``tether`` distribution, read from where it is imported
from (a source checkout with an editable install, or site-packages), with that
distribution's METADATA and entry points, into
``DATA_DIR/wheels/tether-VERSION-py3-none-any.whl``. No build backend runs and nothing is
downloaded, so it works on an air-gapped cloud. It is packed once per process, at the
first request, so a restarted cloud never serves code older than it runs; the archive is
deterministic (sorted, fixed timestamps), so the bytes change only when the code does.
``TETHER_CLOUD_EDGE_WHEEL`` names a wheel to serve instead (one built with
``pip wheel --no-deps .``, say).

The wheel holds code, no secret: ``GET /v1/init/tether-VERSION-py3-none-any.whl`` is open
to whoever reaches the API. Its dependencies are not in it.

The wheelhouse holds them, for nodes with no package index: ``tether cloud wheelhouse
build`` (``build_wheelhouse``) runs ``pip wheel`` from the cloud's own venv on the packed
wheel, with every version pinned to what the cloud itself runs (a constraints file made
from its installed distributions), into ``DATA_DIR/wheelhouse``: the wheels of every
runtime dependency, for the cloud's platform and Python, or with ``--platform`` and
``--python-version`` for another (``pip download --only-binary=:all:``). It needs an
index once, on the cloud's side; the nodes then need none. ``ServedWheelhouse`` lists
it as a page of links at ``GET /v1/init/wheelhouse/`` (what ``pip --find-links`` reads)
and serves each file; when it is not empty, ``install.sh`` installs with
``pip install --no-index --find-links`` against it.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import importlib.util
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from cloud_api.errors import ConfigError
from cloud_api.settings import CloudSettings

__all__ = [
    "DISTRIBUTION",
    "WHEELHOUSE_DIRNAME",
    "ServedWheel",
    "ServedWheelhouse",
    "build_wheelhouse",
    "pack_running",
    "wheel_name",
]

DISTRIBUTION = "tether"
TOP_LEVEL = ("schemas", "broker", "cloud_api", "edge_runtime", "launcher", "tether")
"""The distribution's modules, when its metadata does not list them (no top_level.txt)."""
_EPOCH = (1980, 1, 1, 0, 0, 0)  # the oldest time a zip entry can hold: reproducible bytes
_SKIPPED_DIRS = {"__pycache__"}
_SKIPPED_SUFFIXES = (".pyc", ".pyo")


def wheel_name(version: str) -> str:
    return f"{DISTRIBUTION}-{version}-py3-none-any.whl"


def _distribution() -> importlib.metadata.Distribution:
    """The installed distribution: its ``.dist-info`` (with METADATA) before a source tree's
    ``tether.egg-info``, which ``pip install -e .`` leaves in the working directory and which
    shadows it when the cloud runs from there."""
    found = list(importlib.metadata.distributions(name=DISTRIBUTION))
    for dist in found:
        if dist.read_text("METADATA") is not None:
            return dist
    raise ConfigError(
        f"{DISTRIBUTION} is not installed as a distribution (pip install -e .), so the "
        "cloud cannot pack its wheel: set TETHER_CLOUD_EDGE_WHEEL to a wheel file"
    )


def _module_files(name: str) -> Iterator[tuple[str, Path]]:
    """(name in the wheel, file) for every file of top-level module or package ``name``."""
    spec = importlib.util.find_spec(name)  # locates it; imports nothing
    if spec is None or (spec.origin is None and not spec.submodule_search_locations):
        raise ConfigError(f"cannot find module {name!r} of {DISTRIBUTION} to pack")
    if not spec.submodule_search_locations:
        assert spec.origin is not None
        yield Path(spec.origin).name, Path(spec.origin)
        return
    root = Path(next(iter(spec.submodule_search_locations)))
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = sorted(d for d in subdirectories if d not in _SKIPPED_DIRS)
        for file in sorted(files):
            if not file.endswith(_SKIPPED_SUFFIXES):
                path = Path(directory) / file
                yield f"{name}/{path.relative_to(root).as_posix()}", path


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def pack_running(
    directory: Path, *, version: str | None = None, patch: Mapping[str, bytes] | None = None
) -> Path:
    """Pack the running Tether as a wheel in ``directory``; returns its path. Atomic: a
    reader sees the old file or the new one.

    ``version`` packs it under another version and ``patch`` replaces files by their name
    in the wheel: how a test builds the versions an agent upgrades between.
    """
    dist = _distribution()
    version = version or dist.version
    info = f"{DISTRIBUTION}-{version}.dist-info"
    modules = (dist.read_text("top_level.txt") or "").split() or list(TOP_LEVEL)
    metadata = dist.read_text("METADATA")
    if metadata is None:
        raise ConfigError(f"the installed {DISTRIBUTION} has no METADATA to pack")
    if version != dist.version:
        metadata = "".join(f"Version: {version}\n" if line.startswith("Version:") else line
                           for line in metadata.splitlines(keepends=True))
    entries: list[tuple[str, bytes]] = []
    for module in sorted(modules):
        entries += [(name, (patch or {}).get(name) or path.read_bytes())
                    for name, path in _module_files(module)]
    entries.append((f"{info}/METADATA", metadata.encode("utf-8")))
    entry_points = dist.read_text("entry_points.txt")
    if entry_points:
        entries.append((f"{info}/entry_points.txt", entry_points.encode("utf-8")))
    entries.append((f"{info}/top_level.txt", "".join(f"{m}\n" for m in sorted(modules)).encode()))
    wheel = "Wheel-Version: 1.0\nGenerator: tether-cloud\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    entries.append((f"{info}/WHEEL", wheel.encode("ascii")))
    record = "".join(f"{_record_line(name, data)}\n" for name, data in entries)
    entries.append((f"{info}/RECORD", (record + f"{info}/RECORD,,\n").encode("utf-8")))

    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = directory / wheel_name(version)
    temporary = directory / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}"
    try:
        with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, data in entries:
                entry = zipfile.ZipInfo(name, date_time=_EPOCH)
                entry.external_attr = 0o644 << 16
                entry.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(entry, data)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return target


class ServedWheel:
    """The wheel ``GET /v1/init/NAME`` serves: the configured file, or the running code
    packed at the first request (thread-safe)."""

    def __init__(self, settings: CloudSettings) -> None:
        self.configured = settings.edge_wheel
        self.directory = settings.data_dir / "wheels"
        self._lock = threading.Lock()
        self._packed: Path | None = None

    @property
    def name(self) -> str:
        """The file name, which is also the last segment of its URL."""
        if self.configured is not None:
            return self.configured.name
        return wheel_name(_distribution().version)

    def path(self) -> Path:
        if self.configured is not None:
            if not self.configured.is_file():
                raise ConfigError(f"TETHER_CLOUD_EDGE_WHEEL: no file at {self.configured}")
            return self.configured
        with self._lock:
            if self._packed is None:
                try:
                    self._packed = pack_running(self.directory)
                except OSError as exc:
                    raise ConfigError(f"cannot pack the wheel into {self.directory}: {exc}") from exc
            return self._packed


# -- the wheelhouse: the dependencies, for installs with no index ----------------------------
WHEELHOUSE_DIRNAME = "wheelhouse"
_WHEEL_FILE = re.compile(r"^[A-Za-z0-9_.+-]+\.whl$")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _constraints() -> str:
    """``name==version`` of every distribution the cloud runs, but Tether itself."""
    pins: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name and _canonical(name) != DISTRIBUTION and "+" not in dist.version:
            pins.setdefault(_canonical(name), f"{name}=={dist.version}")
    return "".join(f"{pin}\n" for _, pin in sorted(pins.items()))


def _pip_said(output: str) -> str:
    """The lines of pip's output that say why it failed, on one line."""
    kept: list[str] = []
    lines = output.splitlines()
    for index, line in enumerate(lines):
        text = line.strip()
        if text.startswith("ERROR") or " depends on " in text or "(constraint)" in text:
            kept.append(text)
        elif "no matching distributions available" in text and index + 1 < len(lines):
            kept.append(f"no wheel for this platform: {lines[index + 1].strip()}")
    return " / ".join(dict.fromkeys(kept)) or (output.strip().splitlines() or ["(no output)"])[-1]


def build_wheelhouse(
    settings: CloudSettings, *, platform: str | None = None, python_version: str | None = None,
    pinned: bool = True, add: bool = False,
) -> list[str]:
    """Fill ``DATA_DIR/wheelhouse`` with the wheels of the served wheel's dependencies
    (replacing what was there only once every wheel is in); returns their file names.

    Without ``platform``, ``pip wheel`` for the cloud's own interpreter (it builds what has
    no wheel); with it, ``pip download --only-binary=:all:`` for that platform. ``pinned``:
    the versions the cloud runs; else the newest the requirements allow (a version the
    cloud runs may have no wheel for another platform). ``add``: keep the wheels already
    there (one wheelhouse for nodes of several platforms)."""
    wheel = ServedWheel(settings).path()
    target = settings.data_dir / WHEELHOUSE_DIRNAME
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".wheelhouse-", dir=settings.data_dir))
    try:
        built = work / "wheels"
        constraints = work / "constraints.txt"
        constraints.write_text(_constraints(), encoding="utf-8")
        pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
        if platform is None and python_version is None:
            command = [*pip, "wheel", "--wheel-dir", str(built)]
        else:
            command = [*pip, "download", "--dest", str(built), "--only-binary=:all:"]
            command += ["--platform", platform] if platform else []
            command += ["--python-version", python_version] if python_version else []
        command += ["--constraint", str(constraints)] if pinned else []
        ran = subprocess.run([*command, str(wheel)], capture_output=True, text=True, check=False)
        if ran.returncode != 0:
            hint = "; --unpinned lets pip take other versions" if pinned and platform else ""
            raise ConfigError("pip could not get the dependencies (it needs a package index "
                              f"once, on the cloud): {_pip_said(ran.stdout + ran.stderr)}{hint}")
        for own in built.glob(f"{DISTRIBUTION}-*.whl"):
            own.unlink()  # install.sh takes Tether from its own URL, of the running version
        if add and target.is_dir():
            for kept in target.glob("*.whl"):
                if not (built / kept.name).exists():
                    shutil.copy2(kept, built / kept.name)
        names = sorted(path.name for path in built.iterdir() if path.suffix == ".whl")
        old = work / "old"
        if target.exists():
            target.rename(old)
        built.rename(target)
        return names
    except OSError as exc:
        raise ConfigError(f"cannot build the wheelhouse in {target}: {exc}") from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)


class ServedWheelhouse:
    """``DATA_DIR/wheelhouse`` as ``GET /v1/init/wheelhouse/`` serves it."""

    def __init__(self, settings: CloudSettings) -> None:
        self.directory = settings.data_dir / WHEELHOUSE_DIRNAME

    def names(self) -> list[str]:
        """The wheels in it, sorted; empty when it was never built."""
        if not self.directory.is_dir():
            return []
        return sorted(p.name for p in self.directory.iterdir()
                      if p.is_file() and _WHEEL_FILE.match(p.name))

    def path(self, name: str) -> Path | None:
        """The file ``name`` names, if it is one of the wheels (never a path elsewhere)."""
        return self.directory / name if name in self.names() else None

    def page(self) -> str:
        """An HTML page of links to every wheel, relative: what ``--find-links`` reads."""
        links = "".join(f'<a href="{name}">{name}</a><br>\n' for name in self.names())
        return f"<!DOCTYPE html>\n<html><body>\n{links}</body></html>\n"
