"""The cache survives being killed mid-write, ignores torn temp files, and reloads."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge_runtime import storage
from edge_runtime.cache import CACHE_FILENAME, Cache, ResourceKey
from schemas.shadow import ShadowDocument

# A thread-free helper that forks the writers, so the test process (which has threads)
# never forks. Per round it reads "START DELAY", forks a child that writes the cache in
# a tight loop, SIGKILLs it DELAY seconds after its first write and reaps it.
KILLER = r"""
import os, signal, sys, time
from pathlib import Path
from edge_runtime.cache import Cache
from schemas.shadow import ShadowDocument

data_dir = Path(sys.argv[1])
for line in sys.stdin:
    start, delay = int(line.split()[0]), float(line.split()[1])
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            cache = Cache(data_dir)
            n = start
            while True:
                n += 1
                doc = ShadowDocument(desired={"n": n, "pad": "x" * (n * 37 % 4000)}, version=n)
                cache.save(document=doc, outgoing={"n": n})
                if n == start + 1:
                    os.write(w, b"1")
        finally:
            os._exit(0)
    os.close(w)
    os.read(r, 1)
    os.close(r)
    time.sleep(delay)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    print("killed", flush=True)
"""


def _torn_temp_files(data_dir: Path) -> list[Path]:
    return list(data_dir.glob(f".{CACHE_FILENAME}.*.tmp"))


def test_cache_always_loads_after_sigkill_mid_write(tmp_path: Path) -> None:
    rounds, torn, last = 200, 0, 0
    rng = random.Random(7)
    began = time.monotonic()
    with subprocess.Popen(
        [sys.executable, "-c", KILLER, str(tmp_path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2],
    ) as helper:
        assert helper.stdin is not None and helper.stdout is not None
        for _ in range(rounds):
            helper.stdin.write(f"{last} {rng.uniform(0.002, 0.02):.4f}\n")
            helper.stdin.flush()
            assert helper.stdout.readline().strip() == "killed"
            torn += bool(_torn_temp_files(tmp_path))
            cache = Cache(tmp_path)  # must load, whatever moment the kill hit
            doc, outgoing = cache.document(), cache.outgoing()
            cache.close()
            assert doc is not None and outgoing is not None
            assert doc.desired["n"] == doc.version == outgoing["n"]  # one save, one atomic write
            assert doc.version > last
            last = doc.version
        helper.stdin.close()
    assert not _torn_temp_files(tmp_path)  # loading swept them
    assert torn > 0, "no kill landed mid-write: the test proves nothing"
    assert time.monotonic() - began < 20


def test_torn_temp_file_is_ignored_and_removed(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    cache.save(document=ShadowDocument(desired={"fan": "on"}, version=3))
    cache.close()
    torn = tmp_path / f".{CACHE_FILENAME}.abc123.tmp"
    torn.write_bytes(b'{"document": {"1": {"desired": {"fan": "o')
    cache = Cache(tmp_path)
    assert cache.document() == ShadowDocument(desired={"fan": "on"}, version=3)
    assert not torn.exists()


def test_cache_reloads_everything_after_restart(tmp_path: Path) -> None:
    doc = ShadowDocument(desired={"apps": {"web": "v3"}}, reported={"apps": {"web": "v2"}},
                         version=12, timestamp=5)
    cache = Cache(tmp_path)
    cache.save(document=doc, outgoing={"apps": {"web": "v3"}})
    cache.put_resource(ResourceKey("app", "web", "v3"), {"services": [{"image": "nginx"}]})
    cache.close()
    cache = Cache(tmp_path)
    assert cache.document() == doc
    assert cache.outgoing() == {"apps": {"web": "v3"}}
    assert cache.resource(ResourceKey("app", "web", "v3")) == {"services": [{"image": "nginx"}]}
    assert cache.resource(ResourceKey("app", "web", "v2")) is None
    assert cache.resource_keys() == [ResourceKey("app", "web", "v3")]
    cache.drop_resource(ResourceKey("app", "web", "v3"))
    assert cache.resource_keys() == []
    assert (tmp_path / CACHE_FILENAME).stat().st_mode & 0o777 == 0o600


def test_one_save_is_one_atomic_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = Cache(tmp_path)
    writes: list[int] = []
    real = storage.atomic_write_bytes

    def counting(path: Path, data: bytes, **kwargs: int) -> None:
        writes.append(1)
        real(path, data, **kwargs)

    monkeypatch.setattr(storage, "atomic_write_bytes", counting)
    cache.save(document=ShadowDocument(desired={"a": 1}, version=1), outgoing={"b": 2})
    assert writes == [1]


def test_unreadable_cache_is_moved_aside_not_lost(tmp_path: Path) -> None:
    (tmp_path / CACHE_FILENAME).write_text("{not json")
    cache = Cache(tmp_path)
    assert cache.document() is None
    kept = list(tmp_path.glob(f"{CACHE_FILENAME}.corrupt-*"))
    assert len(kept) == 1 and kept[0].read_text() == "{not json"


def test_stored_file_is_plain_json(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    cache.save(outgoing={"node": {"os": "linux"}})
    stored = json.loads((tmp_path / CACHE_FILENAME).read_text())
    assert stored["outgoing"] == {"1": {"reported": {"node": {"os": "linux"}}}}
