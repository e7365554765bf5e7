"""A TinyDB storage whose writes are atomic, so killing the agent never corrupts its cache.

TinyDB's stock ``JSONStorage`` truncates the file and rewrites it in place: a kill (or a
power cut) in the middle of a write leaves a torn or empty file, and the node loses the
desired state it needs to run offline. ``AtomicJSONStorage`` writes the whole database to
a temporary file in the same directory, flushes and fsyncs it, renames it over the real
file with ``os.replace`` (atomic on POSIX) and fsyncs the directory so the rename itself
is durable. A reader therefore sees either the old or the new file, never a mix.

The agent is the only writer of its data dir (it holds a lock), so the storage keeps the
last written text in memory and parses it on ``read`` instead of reading the disk again.
``deferred()`` groups several TinyDB operations into one write (one fsync).

A full disk (or any failed write) does not stop the node: memory is updated first, so
the node goes on running on what it holds; the failure is logged once, ``unsaved`` is set,
and every later write -- or ``flush()``, which the sync calls every few seconds while
``unsaved`` -- tries the whole file again; the first that succeeds says so and catches up.
What a crash meanwhile loses is only what the disk could not take: the file on disk is
still the last complete one.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tinydb.storages import Storage

from edge_runtime.errors import CacheError

log = logging.getLogger(__name__)
Tables = dict[str, dict[str, Any]]


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` atomically: temp file, fsync, rename, fsync the dir."""
    directory = path.parent
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except OSError:
            pass
        raise
    fsync_dir(directory)


def remove_stale_temp_files(path: Path) -> list[Path]:
    """Delete temp files a killed writer left next to ``path``; they are never read."""
    removed = []
    for leftover in path.parent.glob(f".{path.name}.*.tmp"):
        try:
            leftover.unlink()
            removed.append(leftover)
        except OSError:
            pass
    return removed


class AtomicJSONStorage(Storage):
    """TinyDB storage of one JSON file, replaced atomically on every write."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temp_files(self.path)
            raw = self.path.read_bytes() if self.path.exists() else b""
        except OSError as exc:
            raise CacheError(f"cannot read {self.path}: {exc.strerror or exc}") from exc
        self._text: str | None = None
        if raw.strip():
            try:
                text = raw.decode("utf-8")
                loaded = json.loads(text)
            except (UnicodeDecodeError, ValueError) as exc:
                raise CacheError(f"{self.path} is not a valid cache file: {exc}") from exc
            if not isinstance(loaded, dict):
                raise CacheError(f"{self.path} is not a valid cache file: not a JSON object")
            self._text = text
        self._deferred: Tables | None = None
        self._depth = 0
        self._dirty = False
        self.unsaved = False  # memory holds what the disk could not take

    def read(self) -> Tables | None:
        if self._deferred is not None:
            return self._deferred
        if self._text is None:
            return None
        data: Tables = json.loads(self._text)
        return data

    def write(self, data: Tables) -> None:
        if self._depth:
            self._deferred = data
            self._dirty = True
            return
        self._write_now(data)

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Within this block, writes stay in memory; one atomic write happens at the end."""
        if self._depth == 0:
            self._deferred = self.read() or {}
            self._dirty = False
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                data, dirty = self._deferred, self._dirty
                self._deferred, self._dirty = None, False
                if dirty and data is not None:
                    self._write_now(data)

    def _write_now(self, data: Tables) -> None:
        try:
            text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise CacheError(f"cannot store a value that is not JSON in the cache: {exc}") from exc
        self._text = text  # memory first: the node runs on it, whatever the disk says
        self._save()

    def _save(self) -> None:
        assert self._text is not None
        try:
            atomic_write_bytes(self.path, self._text.encode("utf-8"))
        except OSError as exc:
            if not self.unsaved:
                log.error("cannot write the cache %s: %s; running on what is held in memory "
                          "until the disk takes it again (free some space)", self.path,
                          exc.strerror or exc)
            self.unsaved = True
            return
        if self.unsaved:
            log.warning("the cache %s is written again: the disk caught up with memory", self.path)
        self.unsaved = False

    def flush(self) -> bool:
        """Try again to write what only memory holds; True when the disk has everything."""
        if self.unsaved and self._text is not None and self._depth == 0:
            self._save()
        return not self.unsaved

    def close(self) -> None:
        pass
