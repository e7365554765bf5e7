"""``tether bench serving``: the CPU one bridge worker spends per node message, without MQTT.

Why it exists: the fleet bench (``tether bench fleet``) measures the whole system, and on
a shared 2-core machine its wall-clock figures move with whatever else runs. This one
calls ``ShadowServer.handle_batch`` directly, in this thread, on a store of N nodes whose
shadows look like a simulated node's (facts, stats, one app), and counts the process's
CPU time per message: ``shadow/update`` (a reported patch), ``shadow/get`` and
``status``, at several batch sizes. What it leaves out is the broker and paho; what it
keeps is everything the cloud does between a message's arrival and its reply's bytes.
``--profile`` prints where that time goes (cProfile).
"""

from __future__ import annotations

import cProfile
import io
import pstats
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from cloud_api.metrics import Metrics
from cloud_api.mqtt.serving import ShadowServer
from cloud_api.services.namespaces import ensure_namespace
from cloud_api.settings import sqlalchemy_url
from cloud_api.store.engine import Store, table_of
from cloud_api.store.models import Node, Shadow
from launcher.fleet.services import ScratchDatabase
from schemas.payloads import encode_json
from schemas.shadow import DEFAULT_LIMITS
from schemas.topics import Suffix, TopicScheme

NAMESPACE = "bench"


class _CountingPublisher:
    def __init__(self) -> None:
        self.count = 0
        self.bytes = 0

    def publish(self, topic: str, payload: bytes, *, retain: bool = False, qos: int = 1) -> None:
        self.count += 1
        self.bytes += len(payload)


def _reported(index: int) -> dict[str, Any]:
    """What a simulated node reports after a rollout (see ``launcher.fleet``)."""
    return {
        "node": {"os": "linux", "arch": "x86_64", "kernel": "6.1.0", "python": "3.11.7",
                 "backend": "native", "simulated": True, "hostname": f"n{index}"},
        "nodestats": {"cpu": 3.5, "memory": {"total": 8_201_367_552, "used": 2_101_395_456},
                      "disk": {"total": 105_088_212_992, "used": 33_957_384_192}},
        "apps": {"fleet-app": "v1"},
        "appstats": {"fleet-app": {"version": "v1", "status": "Running", "instances": [
            {"name": "main", "status": "Running", "pid": 1000 + index, "restarts": 0}]}},
    }


def run_serving_bench(
    *, nodes: int = 10_000, messages: int = 5_000, batch_sizes: Sequence[int] = (1, 8, 64),
    database_url: str | None = None, profile: bool = False,
) -> dict[str, Any]:
    """Per-message CPU microseconds, by kind and batch size (and a profile if asked).

    With ``database_url`` (a PostgreSQL server), the bench creates a database of its own
    there and drops it at the end, as ``tether bench fleet`` does."""
    scratch_database = ScratchDatabase(database_url) if database_url else None
    with tempfile.TemporaryDirectory(prefix="tether-bench-") as scratch:
        if scratch_database is not None:
            scratch_database.create()
        url = sqlalchemy_url(scratch_database.url if scratch_database is not None
                             else f"sqlite:///{Path(scratch) / 'bench.db'}")
        store = Store(url)
        try:
            return _run(store, nodes=nodes, messages=messages, batch_sizes=batch_sizes,
                        profile=profile)
        finally:
            store.close()
            if scratch_database is not None:
                scratch_database.drop()


def _run(store: Store, *, nodes: int, messages: int, batch_sizes: Sequence[int],
         profile: bool) -> dict[str, Any]:
    store.create_schema()
    names = [f"n{i}" for i in range(nodes)]
    with store.session() as session:
        ensure_namespace(session, NAMESPACE, now=1)
        connection = session.connection()
        connection.execute(insert(Node), [
            {"namespace": NAMESPACE, "name": name, "labels": {}, "description": "",
             "mode": "native", "created_at": 1, "online": True} for name in names])
        connection.execute(insert(table_of(Shadow)), [
            {"namespace": NAMESPACE, "node": name,
             "desired": {"apps": {"fleet-app": "v1"}}, "reported": _reported(i),
             "metadata": {"desired": {}, "reported": {}}, "version": 1, "timestamp": 1}
            for i, name in enumerate(names)])
        session.commit()
    topics, publisher = TopicScheme(), _CountingPublisher()
    server = ShadowServer(store, publisher, topics=topics, limits=DEFAULT_LIMITS,
                          metrics=Metrics())
    sequence = iter(range(10**9))

    def message(kind: Suffix, index: int) -> tuple[str, bytes]:
        topic = topics.topic(NAMESPACE, names[index % nodes], kind)
        if kind is Suffix.SHADOW_UPDATE:
            seq = next(sequence)
            body: dict[str, Any] = {"state": {"reported": {"bench": {"seq": seq}}},
                                    "clientToken": f"t{seq}"}
        elif kind is Suffix.SHADOW_GET:
            body = {"clientToken": f"g{next(sequence)}"}
        else:
            body = {"online": True}
        return topic, encode_json(body)

    results: dict[str, Any] = {"nodes": nodes, "messages": messages, "database": store.engine.dialect.name,
                               "cpu_us_per_message": {}}
    profiler = cProfile.Profile(time.process_time) if profile else None
    for kind in (Suffix.SHADOW_UPDATE, Suffix.SHADOW_GET, Suffix.STATUS):
        for size in batch_sizes:
            batches = [[message(kind, start + offset) for offset in range(size)]
                       for start in range(0, messages, size)]
            server.handle_batch(batches[0])  # warm: statement caches, connections
            if profiler is not None and size == batch_sizes[0] and kind is Suffix.SHADOW_UPDATE:
                profiler.enable()
            started = time.process_time()
            for batch in batches[1:]:
                server.handle_batch(batch)
            spent = time.process_time() - started
            if profiler is not None:
                profiler.disable()  # the profile is of the first size of updates only
            handled = sum(len(batch) for batch in batches[1:])
            results["cpu_us_per_message"][f"{kind.value} x{size}"] = round(1e6 * spent / handled, 1)
    results["replies"] = publisher.count
    if profiler is not None:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(30)
        results["profile"] = out.getvalue()
    return results
