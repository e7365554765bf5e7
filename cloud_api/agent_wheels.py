"""The agent wheels an operator uploads, served to nodes that upgrade themselves.

Why it exists: ``desired.sysapps.tether`` names an agent version and the wheel a native
node installs it from (``schemas.sysapps``). The cloud keeps those wheels under
``DATA_DIR/wheels/agents/`` and serves them at ``GET /v1/agent/wheels/FILE``, so a node
needs no package index. A wheel is checked at upload: a zip holding a ``tether``
``.dist-info/METADATA``; its version is read from there, never from the file name. Its
sha256 goes into desired and the node checks it, so a wheel swapped on disk or in transit
is refused. Like the install wheel, these hold code and no secret: fetching needs no token.
"""

from __future__ import annotations

import hashlib
import io
import os
import secrets
import zipfile
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path

from cloud_api.errors import NotFound
from schemas.errors import ErrorCode, Rejection
from schemas.sysapps import is_valid_version, wheel_filename

MAX_WHEEL_BYTES = 64 << 20
WHEELS_PATH = "/v1/agent/wheels"
"""Where the REST API serves them (``GET WHEELS_PATH/FILE``) and takes uploads (``PUT``)."""


@dataclass(frozen=True)
class AgentWheel:
    version: str
    filename: str
    sha256: str
    size: int

    def to_json(self, *, public_url: str) -> dict[str, object]:
        return {"version": self.version, "filename": self.filename, "sha256": self.sha256,
                "size": self.size, "url": f"{public_url}{WHEELS_PATH}/{self.filename}"}


def wheel_version(data: bytes) -> str:
    """The version in a tether wheel's METADATA; 400 if ``data`` is not such a wheel."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = [n for n in archive.namelist()
                     if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
            if len(names) != 1:
                raise Rejection(ErrorCode.BAD_REQUEST, "the wheel has no single .dist-info/METADATA")
            metadata = HeaderParser().parsestr(archive.read(names[0]).decode("utf-8"))
    except (zipfile.BadZipFile, UnicodeDecodeError, KeyError) as exc:
        raise Rejection(ErrorCode.BAD_REQUEST, f"not a wheel: {exc}; upload a .whl file") from exc
    if (metadata.get("Name") or "").lower() != "tether":
        raise Rejection(ErrorCode.BAD_REQUEST,
                        f"the wheel is of {metadata.get('Name')!r}, not tether")
    version = metadata.get("Version") or ""
    if not is_valid_version(version):
        raise Rejection(ErrorCode.BAD_REQUEST, f"the wheel's version {version!r} is not usable")
    return version


class AgentWheels:
    """The stored wheels, one per version (an upload of a version replaces it)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def add(self, data: bytes) -> AgentWheel:
        version = wheel_version(data)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        target = self.directory / wheel_filename(version)
        temporary = self.directory / f".{target.name}.{secrets.token_hex(4)}"
        try:
            temporary.write_bytes(data)
            os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)
        return AgentWheel(version, target.name, hashlib.sha256(data).hexdigest(), len(data))

    def list(self) -> list[AgentWheel]:
        if not self.directory.is_dir():
            return []
        found = []
        for path in sorted(self.directory.glob("tether-*-py3-none-any.whl")):
            version = path.name[len("tether-"):-len("-py3-none-any.whl")]
            found.append(self._describe(version, path))
        return found

    def get(self, version: str) -> AgentWheel:
        """The wheel of ``version``; 404 with what to do if there is none."""
        path = self.path(wheel_filename(version)) if is_valid_version(version) else None
        if path is None:
            raise NotFound(f"no agent wheel of version {version!r}: upload it with "
                           "`tether agent upload FILE`")
        return self._describe(version, path)

    def path(self, filename: str) -> Path | None:
        if "/" in filename or "\0" in filename or filename.startswith(".") or len(filename) > 255:
            return None
        path = self.directory / filename
        try:
            return path if path.is_file() else None
        except OSError:  # a name the filesystem refuses
            return None

    @staticmethod
    def _describe(version: str, path: Path) -> AgentWheel:
        data = path.read_bytes()
        return AgentWheel(version, path.name, hashlib.sha256(data).hexdigest(), len(data))
