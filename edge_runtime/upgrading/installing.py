"""Installing an agent version beside the running one, with no package index.

Why it exists: a node fetches the target's wheel from its cloud (``desired.sysapps.tether
.wheel``), checks its sha256, and builds a venv of its own for it, so switching versions is
a symlink rename and going back needs nothing but the old venv, still in place.

How the venv is built -- the choice, and why:

- **copy the running venv, then install the wheel into the copy with pip, offline**
  (``pip install --no-index``). The copy holds every dependency the running agent has, so
  pip installs only the wheel and checks the new version's requirements against what is
  there: a version that needs a dependency the node lacks fails here, with pip's message,
  before anything switches. Files are copied as hard links (``os.link``), so the copy costs
  inodes, not megabytes, and is fast; pip replaces files (never writes into them), so the
  old venv stays intact. Across filesystems it falls back to real copies.
- installing into a fresh venv with ``--no-index --find-links`` would need every
  dependency as a wheel on the node, which no node has (site-packages holds installed
  distributions, not archives); pointing a fresh venv at the old one's site-packages would
  make the new version die with the old one's deletion.

A venv is moved by copying because its ``bin/python`` finds ``pyvenv.cfg`` beside it: the
copy's prefix is the copy. The launcher runs ``venv/bin/python -m edge_runtime``, never the
console scripts, whose shebangs still name the old path.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import shutil
import ssl
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from edge_runtime.errors import UpgradeError
from schemas.sysapps import AgentTarget, wheel_filename

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT_SECONDS = 60.0
PIP_TIMEOUT_SECONDS = 300.0
MAX_WHEEL_BYTES = 256 << 20
PARTIAL = ".partial-"
_PROBE = ("import importlib.metadata as m, edge_runtime.agent, edge_runtime.cli; "
          "print(m.version('tether'))")


def fetch_wheel(
    target: AgentTarget, directory: Path, *, verify: ssl.SSLContext | bool = True,
    transport: httpx.BaseTransport | None = None,
) -> Path:
    """Download the target's wheel into ``directory`` (kept if already there and intact);
    ``UpgradeError`` if it cannot be fetched or its sha256 differs."""
    import httpx  # only when upgrading: an idle agent does not pay for it (~30 MiB)

    if not target.url:
        raise UpgradeError(f"desired.sysapps.tether names no wheel for {target.version}: "
                           "upload one with `tether agent upload` and set the version again")
    path = directory / wheel_filename(target.version)
    if path.is_file() and _sha256(path) == target.sha256:
        return path
    partial = path.with_name(path.name + ".partial")
    digest = hashlib.sha256()
    size = 0
    try:
        with httpx.Client(timeout=DOWNLOAD_TIMEOUT_SECONDS, verify=verify,
                          transport=transport) as client, \
                client.stream("GET", target.url) as response:
            if response.status_code != 200:
                raise UpgradeError(f"cannot fetch {target.url}: HTTP {response.status_code}")
            with open(partial, "wb") as output:
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > MAX_WHEEL_BYTES:
                        raise UpgradeError(f"{target.url} is larger than {MAX_WHEEL_BYTES} bytes")
                    digest.update(chunk)
                    output.write(chunk)
                output.flush()
                os.fsync(output.fileno())
        if digest.hexdigest() != target.sha256:
            raise UpgradeError(f"the wheel of {target.version} has sha256 {digest.hexdigest()}, "
                               f"not {target.sha256}: upload it again")
        os.replace(partial, path)
    except httpx.HTTPError as exc:
        raise UpgradeError(f"cannot fetch {target.url}: {exc}") from exc
    except OSError as exc:
        raise UpgradeError(f"cannot store the wheel in {directory}: {exc}") from exc
    finally:
        partial.unlink(missing_ok=True)
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        for block in iter(lambda: source.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _link_or_copy(source: str, destination: str) -> None:
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


def build_venv(running: Path, wheel: Path, destination: Path, *, version: str) -> None:
    """Build ``destination`` as a copy of the ``running`` venv with ``wheel`` installed, and
    check it runs ``version``; ``UpgradeError`` if not. Built as ``DEST.partial-*`` and
    renamed: ``destination`` exists only complete."""
    # a directory of this attempt's own: a pip left running by a killed agent (it is not in
    # the agent's process group's fate) can only spoil its own attempt's directory
    partial = destination.with_name(f"{destination.name}{PARTIAL}{os.getpid()}-"
                                    f"{secrets.token_hex(3)}")
    try:
        shutil.copytree(running, partial, symlinks=True, copy_function=_link_or_copy)
    except (OSError, shutil.Error) as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise UpgradeError(f"cannot copy the venv {running} to {partial}: {exc}") from exc
    python = partial / "bin" / "python"
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("PYTHON", "PIP_", "VIRTUAL_ENV"))}
    pip = [str(python), "-m", "pip", "install", "--no-index", "--no-cache-dir",
           "--disable-pip-version-check", "--quiet", str(wheel)]
    _run(pip, env=env, what=f"pip could not install {wheel.name}", cleanup=partial)
    found = _run([str(python), "-c", _PROBE], env=env, cleanup=partial,
                 what=f"the new venv of {version} does not run the agent")
    if found != version:
        shutil.rmtree(partial, ignore_errors=True)
        raise UpgradeError(f"the wheel installed version {found or '?'}, not {version}: "
                           "upload the right wheel")
    shutil.rmtree(destination, ignore_errors=True)
    os.replace(partial, destination)


def _run(argv: list[str], *, env: dict[str, str], what: str, cleanup: Path) -> str:
    try:
        # in the new venv's own directory: ``-c`` and ``-m`` put the working directory first
        # on sys.path, and a checkout there (a ``tether.egg-info``) would be what it finds
        done = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=cleanup,
                              timeout=PIP_TIMEOUT_SECONDS, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(cleanup, ignore_errors=True)
        raise UpgradeError(f"{what}: {exc}") from exc
    if done.returncode != 0:
        shutil.rmtree(cleanup, ignore_errors=True)
        lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        raise UpgradeError(f"{what}: {lines[-1] if lines else f'exit code {done.returncode}'}")
    return done.stdout.strip()


def remove_partials(venvs: Path) -> None:
    """Delete venvs a killed agent left half built."""
    for partial in venvs.glob(f"*{PARTIAL}*"):
        shutil.rmtree(partial, ignore_errors=True)
