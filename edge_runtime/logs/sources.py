"""Where log lines come from: the ``LogSource`` interface and the file of a native process.

Why an interface: the log server streams the same way whatever runs the app; a native
process writes ``apps/{app}/logs/{service}-{i}.log`` (``backends.native.processes``), a pod's
log is read through the Kubernetes API (``backends.kube.podlogs``). A source gives its last
lines (``tail``) and then, when polled, the lines written since (``poll``).

``FileSource`` reads a file backwards for the tail (never more than ``MAX_TAIL_BYTES`` plus
one block, however long the file), then follows it by position. A file that shrank or was
replaced (the backend rotates it to ``.log.1`` when a process starts and finds it over
1 MiB) is read again from its start. A partial last line waits for its newline, up to
``MAX_LINE_BYTES``. One poll reads at most ``MAX_TAIL_BYTES``; what a writer adds faster
than that is skipped and the poll says so (``truncated``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol, runtime_checkable

from schemas.logs import MAX_LINE_BYTES, MAX_TAIL_BYTES, cut_line

BLOCK = 64 * 1024


class LogSource(Protocol):
    """One instance's log. Methods may raise ``OSError`` or ``BackendError``."""

    name: str  # the instance: "api-0", a pod name

    def tail(self, lines: int) -> list[str]:
        """Its last ``lines`` lines; later polls return what comes after them."""

    def poll(self) -> tuple[list[str], bool]:
        """The complete lines written since the last call, and whether some were skipped."""


@runtime_checkable
class LogReadable(Protocol):
    """A backend that can say where an app's logs are (both backends can)."""

    def log_sources(self, app: str, service: str | None = None) -> list[LogSource]:
        """One source per instance; ``LookupError`` when the app does not run here."""


def _decode(data: bytes) -> list[str]:
    return [cut_line(line.decode("utf-8", "replace")) for line in data.split(b"\n")]


class FileSource:
    """A log file written by appending (a native process's stdout and stderr)."""

    def __init__(self, path: Path, *, name: str) -> None:
        self.path, self.name = path, name
        self._position = 0
        self._inode: int | None = None
        self._partial = b""

    def tail(self, lines: int) -> list[str]:
        try:
            with open(self.path, "rb") as file:
                stat = os.fstat(file.fileno())
                end = stat.st_size
                self._inode, self._position, self._partial = stat.st_ino, end, b""
                if lines <= 0:
                    return []
                data, start = b"", end
                while start > 0 and data.count(b"\n") <= lines and len(data) <= MAX_TAIL_BYTES:
                    step = min(BLOCK, start)
                    start -= step
                    file.seek(start)
                    data = file.read(step) + data
        except FileNotFoundError:
            self._inode, self._position = None, 0
            return []
        if data.endswith(b"\n"):
            data = data[:-1]
        found = _decode(data) if data else []
        if start > 0 and found:
            found = found[1:]  # the first line read may be the end of a longer one
        return found[-lines:]

    def poll(self) -> tuple[list[str], bool]:
        try:
            with open(self.path, "rb") as file:
                stat = os.fstat(file.fileno())
                if stat.st_ino != self._inode or stat.st_size < self._position:
                    self._inode, self._position, self._partial = stat.st_ino, 0, b""  # rotated
                skipped = stat.st_size - self._position > MAX_TAIL_BYTES
                if skipped:
                    self._position, self._partial = stat.st_size - MAX_TAIL_BYTES, b""
                file.seek(self._position)
                data = file.read(MAX_TAIL_BYTES)
        except FileNotFoundError:
            return [], False
        self._position += len(data)
        data = self._partial + data
        complete, _, self._partial = data.rpartition(b"\n")
        if len(self._partial) > MAX_LINE_BYTES:  # a line that never ends: send what there is
            complete, self._partial = data, b""
            return _decode(complete), skipped
        return (_decode(complete) if data.count(b"\n") else []), skipped
