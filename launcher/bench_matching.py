"""``tether bench matching``: how long recomputing desired apps takes for a whole fleet.

The scenario: ``nodes`` nodes and ``apps`` apps with label selectors in one namespace;
then every node's labels change so that every node's matched apps change, and the cloud
recomputes the desired apps of all of them (``services.matching.sync_desired_apps``):
bulk reads, one selector parse per app, matching by label index, and one compare-and-swap
shadow update per node (written in batches, durable), each published (to a counting
publisher here, so the broker is not what is measured).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, insert, update

from cloud_api.services.matching import sync_desired_apps
from cloud_api.services.namespaces import ensure_namespace
from cloud_api.services.resources import put_resource
from cloud_api.services.secrets_crypto import SecretBox
from cloud_api.settings import sqlalchemy_url
from cloud_api.store.engine import Store, table_of
from cloud_api.store.models import Node, Shadow
from schemas.resources import App, ResourceKind, Service
from schemas.shadow import DEFAULT_LIMITS
from schemas.topics import TopicScheme

NAMESPACE = "bench"
ZONES = 10


class CountingPublisher:
    def __init__(self) -> None:
        self.count = 0

    def publish(self, topic: str, payload: bytes, *, retain: bool = False, qos: int = 1) -> None:
        self.count += 1


def _labels(index: int, shift: int) -> dict[str, str]:
    return {"zone": f"z{(index + shift) % ZONES}", "tier": "abc"[index % 3], "id": f"n{index}"}


def _selector(index: int) -> str:
    zone, other = f"z{index % ZONES}", f"z{(index + 3) % ZONES}"
    return [f"zone={zone}", f"zone in ({zone},{other}),tier!=c", f"zone={zone},!gpu,tier"][index % 3]


def run_matching_bench(
    nodes: int = 10_000, apps: int = 100, database_url: str | None = None
) -> dict[str, Any]:
    """Build the fleet, change every node's labels, time the recompute. Seconds in the result."""
    with tempfile.TemporaryDirectory(prefix="tether-bench-") as scratch:
        url = sqlalchemy_url(database_url or f"sqlite:///{Path(scratch) / 'bench.db'}")
        store = Store(url)
        try:
            return _run(store, nodes=nodes, apps=apps)
        finally:
            store.close()


def _run(store: Store, *, nodes: int, apps: int) -> dict[str, Any]:
    store.create_schema()
    box = SecretBox("bench")
    topics, publisher = TopicScheme(), CountingPublisher()
    names = [f"n{i}" for i in range(nodes)]
    started = time.perf_counter()
    with store.session() as session:
        ensure_namespace(session, NAMESPACE, now=1)
        connection = session.connection()
        connection.execute(insert(Node), [
            {"namespace": NAMESPACE, "name": name, "labels": _labels(i, 0), "description": "",
             "mode": "native", "created_at": 1, "online": False} for i, name in enumerate(names)])
        connection.execute(insert(table_of(Shadow)), [
            {"namespace": NAMESPACE, "node": name, "desired": {"apps": {}}, "reported": {},
             "metadata": {"desired": {}, "reported": {}}, "version": 0, "timestamp": 0}
            for name in names])
        session.commit()
        for index in range(apps):
            app = App(name=f"app{index}", selector=_selector(index),
                      services=[Service(name="main", image=f"example/app{index}:1")])
            put_resource(session, box, NAMESPACE, ResourceKind.APP, app.wire(), description="",
                         labels={}, now=1, create=True)
    setup = time.perf_counter() - started

    def sync() -> tuple[float, int]:
        began = time.perf_counter()
        count = sync_desired_apps(store, NAMESPACE, publisher=publisher, topics=topics,
                                  limits=DEFAULT_LIMITS, now=2)
        return time.perf_counter() - began, count

    initial, initial_updated = sync()
    started = time.perf_counter()
    with store.session() as session:
        table = table_of(Node)
        session.connection().execute(
            update(table).where(table.c.namespace == NAMESPACE, table.c.name == bindparam("b_name"))
            .values(labels=bindparam("b_labels")),
            [{"b_name": name, "b_labels": _labels(i, 1)} for i, name in enumerate(names)])
        session.commit()
    relabel = time.perf_counter() - started
    recompute, updated = sync()
    again, unchanged = sync()
    return {
        "nodes": nodes,
        "apps": apps,
        "database": store.engine.dialect.name,
        "setup_seconds": round(setup, 3),
        "initial_match_seconds": round(initial, 3),
        "initial_updated_nodes": initial_updated,
        "relabel_seconds": round(relabel, 3),
        "recompute_seconds": round(recompute, 3),
        "recompute_updated_nodes": updated,
        "noop_recompute_seconds": round(again, 3),
        "noop_updated_nodes": unchanged,
        "messages_published": publisher.count,
    }
