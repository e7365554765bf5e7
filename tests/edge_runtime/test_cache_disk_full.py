"""A cache write the disk refuses (ENOSPC): memory keeps the state, the failure is said
once, the file on disk stays the last complete one, and ``flush`` catches up once the
disk takes writes again. (tests/chaos/test_disk_full.py does it on a real full tmpfs.)"""

from __future__ import annotations

import errno
import logging
from pathlib import Path

import pytest

from edge_runtime import storage
from edge_runtime.cache import Cache
from schemas.shadow import ShadowDocument


def document(seq: int) -> ShadowDocument:
    return ShadowDocument(desired={"properties": {"seq": seq}}, reported={},
                          metadata={"desired": {}, "reported": {}}, version=seq, timestamp=0)


def test_a_full_disk_keeps_the_cache_in_memory_and_catches_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    cache = Cache(tmp_path)
    cache.save(document=document(1))
    on_disk = (tmp_path / "cache.json").read_text()
    real_write = storage.atomic_write_bytes

    def full(path: Path, data: bytes, *, mode: int = 0o600) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(storage, "atomic_write_bytes", full)
    with caplog.at_level(logging.WARNING, logger="edge_runtime.storage"):
        cache.save(document=document(2))
        cache.save(document=document(3))
        assert not cache.flush()
    assert cache.unsaved
    doc = cache.document()
    assert doc is not None and doc.version == 3  # the node runs on memory
    assert (tmp_path / "cache.json").read_text() == on_disk  # the last complete file
    assert sum("running on what is held in memory" in r.message for r in caplog.records) == 1

    monkeypatch.setattr(storage, "atomic_write_bytes", real_write)
    assert cache.flush() and not cache.unsaved
    cache.close()
    reopened = Cache(tmp_path).document()
    assert reopened is not None and reopened.version == 3
