"""The batched write path (``store.shadow_writing``) keeps every guarantee of one-by-one
updates: order per node, a get that sees what came before it, 409 and 413 per update,
nothing lost to concurrent writers in other processes, and nothing published before its
commit."""

from __future__ import annotations

import json
import multiprocessing
import random
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError

from cloud_api.metrics import UPDATES_ACCEPTED, UPDATES_REJECTED, Metrics
from cloud_api.mqtt.serving import ShadowServer
from cloud_api.mqtt.transport import MemoryPublisher, Published
from cloud_api.runtime import Cloud
from cloud_api.services.nodes import get_node
from cloud_api.services.shadows import get_document, update_shadow
from cloud_api.settings import CloudSettings
from cloud_api.store import shadow_sql
from cloud_api.store.engine import Store
from cloud_api.store.shadow_writing import Fetch, Update, locked_write, write_batch
from schemas.shadow import DEFAULT_LIMITS, ShadowLimits, UpdateRequest, apply_update
from schemas.topics import Suffix, TopicScheme


def serve(cloud: Cloud, *, limits: ShadowLimits | None = None) -> tuple[ShadowServer, MemoryPublisher, Metrics]:
    publisher, metrics = MemoryPublisher(), Metrics()
    server = ShadowServer(cloud.store, publisher, topics=cloud.settings.topics,
                          limits=limits or cloud.settings.limits, metrics=metrics,
                          clock=cloud.context.clock)
    return server, publisher, metrics


def message(topics: TopicScheme, node: str, suffix: Suffix, body: Any) -> tuple[str, bytes]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return topics.topic("default", node, suffix), raw


def replies(publisher: MemoryPublisher, node: str) -> list[tuple[str, Any]]:
    """(suffix, body) of what the node was sent, in order (documents left out)."""
    out = []
    for published in publisher.messages:
        _, _, suffix = published.topic.partition(f"/default/{node}/")
        if suffix and suffix != "shadow/update/documents":
            out.append((suffix, published.json()))
    return out


def test_one_batch_answers_each_node_in_order_and_a_get_sees_what_came_before(cloud: Cloud) -> None:
    for node in ("n1", "n2"):
        cloud.create_node(node)
    server, publisher, metrics = serve(cloud)
    topics = cloud.settings.topics
    batch = [
        message(topics, "n1", Suffix.SHADOW_UPDATE, {"state": {"reported": {"a": 1}}, "clientToken": "u1"}),
        message(topics, "n2", Suffix.SHADOW_UPDATE, {"state": {"reported": {"b": 1}}, "clientToken": "v1"}),
        message(topics, "n1", Suffix.SHADOW_GET, {"clientToken": "g1"}),
        message(topics, "n1", Suffix.SHADOW_UPDATE, {"state": {"reported": {"a": 2}}, "version": 1, "clientToken": "u2"}),
        message(topics, "n1", Suffix.SHADOW_UPDATE, {"state": {"reported": {"a": 3}}, "version": 1, "clientToken": "u3"}),
        message(topics, "n1", Suffix.SHADOW_UPDATE, b"not json"),
        message(topics, "n1", Suffix.STATUS, {"online": True}),
        message(topics, "ghost", Suffix.SHADOW_UPDATE, {"state": {"reported": {"x": 1}}, "clientToken": "x"}),
        message(topics, "n1", Suffix.SHADOW_UPDATE, {"state": {"reported": {"a": 4}}, "clientToken": "u4"}),
    ]
    server.handle_batch(batch)

    n1 = replies(publisher, "n1")
    assert [(suffix, body.get("clientToken"), body.get("version", body.get("code"))) for suffix, body in n1] == [
        ("shadow/update/accepted", "u1", 1),
        ("shadow/get/accepted", "g1", 1),  # sees u1, not what came after it
        ("shadow/update/accepted", "u2", 2),
        ("shadow/update/rejected", "u3", 409),  # named version 1, the document was at 2
        ("shadow/update/rejected", None, 400),
        ("shadow/update/accepted", "u4", 3),
    ]
    assert n1[1][1]["state"]["reported"] == {"a": 1}
    assert [body["clientToken"] for _, body in replies(publisher, "n2")] == ["v1"]
    (ghost,) = replies(publisher, "ghost")
    assert ghost[0] == "shadow/update/rejected" and ghost[1]["code"] == 404
    with cloud.store.session() as session:
        document = get_document(session, "default", "n1")
    assert (document.version, document.reported) == (3, {"a": 4})
    assert metrics.value(UPDATES_ACCEPTED, source="mqtt") == 4
    assert sum(metrics.value(UPDATES_REJECTED, source="mqtt", code=c) for c in ("400", "404", "409")) == 3
    with cloud.store.session() as session:
        assert get_node(session, "default", "n1").online


def test_a_too_large_update_is_refused_alone(cloud: Cloud) -> None:
    cloud.create_node("n1")
    server, publisher, _ = serve(cloud, limits=ShadowLimits(max_state_bytes=200))
    topics = cloud.settings.topics
    server.handle_batch([
        message(topics, "n1", Suffix.SHADOW_UPDATE, {"state": {"reported": {"big": "x" * 300}}, "clientToken": "big"}),
        message(topics, "n1", Suffix.SHADOW_UPDATE, {"state": {"reported": {"small": 1}}, "clientToken": "ok"}),
    ])
    assert [(body["clientToken"], body.get("code")) for _, body in replies(publisher, "n1")] == [
        ("big", 413), ("ok", None)]


def _failing_commits(cloud: Cloud, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every commit of ``cloud``'s database fails as when the server is lost (SQLSTATE
    08006). On PostgreSQL in the server itself, at the ``COMMIT``, after every statement of
    the transaction ran (a constraint trigger deferred to it). On SQLite, the connection's
    ``commit``."""
    if cloud.store.is_sqlite:
        def failing_commit(self: Connection) -> None:
            raise OperationalError("COMMIT", {}, Exception("disk I/O error"))

        monkeypatch.setattr(Connection, "commit", failing_commit)
        return
    with cloud.store.engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE FUNCTION refuse_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "RAISE EXCEPTION 'the server is gone' USING ERRCODE = '08006'; END $$")
        connection.exec_driver_sql(
            "CREATE CONSTRAINT TRIGGER refuse_commit AFTER UPDATE ON shadows "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_commit()")


def test_nothing_is_published_when_the_commit_fails(cloud: Cloud, monkeypatch: pytest.MonkeyPatch) -> None:
    """Durable before accepted: a batch whose commit fails (the database is unavailable)
    answers every update with 503, which nodes retry."""
    cloud.create_node("n1")
    server, publisher, _ = serve(cloud)
    topics = cloud.settings.topics
    _failing_commits(cloud, monkeypatch)
    server.handle_batch([
        message(topics, "n1", Suffix.SHADOW_UPDATE, {"state": {"reported": {"a": 1}}, "clientToken": "u1"}),
        message(topics, "n1", Suffix.SHADOW_GET, {"clientToken": "g1"}),
    ])
    monkeypatch.undo()
    sent = replies(publisher, "n1")
    assert [(suffix, body["code"]) for suffix, body in sent] == [
        ("shadow/update/rejected", 503), ("shadow/get/rejected", 503)]
    with cloud.store.session() as session:
        assert get_document(session, "default", "n1").version == 0


# -- several processes on one document -------------------------------------------------------
def _hammer(url: str, writer: str, count: int, seed: int, queue: Any) -> None:
    """A process of its own: ``count`` updates of ``writer``'s key in random batches, half
    through the batched path and half through the ORM compare-and-swap REST uses."""
    store = Store(url)
    rng = random.Random(seed)
    versions: list[int] = []
    done = 0
    while done < count:
        size = min(rng.randint(1, 8), count - done)
        if rng.random() < 0.5:
            ops = [Update("default", "hot", request=UpdateRequest(
                state={"reported": {writer: {"n": done + i}}})) for i in range(size)]
            ops.insert(0, Fetch("default", "hot"))  # type: ignore[arg-type]
            write_batch(store, ops, now=1, limits=DEFAULT_LIMITS)
            for op in ops:
                assert op.error is None, op.error
                if isinstance(op, Update):
                    assert op.outcome is not None
                    versions.append(op.outcome.document.version)
        else:
            for i in range(size):
                with store.session() as session:
                    outcome = update_shadow(session, "default", "hot",
                                            {"state": {"reported": {writer: {"n": done + i}}}},
                                            writable=("reported",), now=1)
                versions.append(outcome.document.version)
        done += size
    store.close()
    queue.put((writer, versions))


@pytest.mark.timeout(180)
def test_writers_in_three_processes_lose_nothing(store_url: str, tmp_path: Path) -> None:
    settings = CloudSettings(data_dir=tmp_path / "data", database_url=store_url)
    with Cloud(settings) as cloud:
        cloud.create_node("hot")
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    count = 150
    processes = [context.Process(target=_hammer, args=(store_url, f"w{i}", count, i, queue))
                 for i in range(3)]
    for process in processes:
        process.start()
    results = dict(queue.get(timeout=150) for _ in processes)
    for process in processes:
        process.join(30)
        assert process.exitcode == 0
    every = sorted(v for versions in results.values() for v in versions)
    assert every == list(range(1, 3 * count + 1))  # each update its own version, none lost
    for versions in results.values():
        assert versions == sorted(versions)  # a writer's updates land in the order it sent them
    with Cloud(settings) as cloud, cloud.store.session() as session:
        document = get_document(session, "default", "hot")
    assert document.version == 3 * count
    assert document.reported == {f"w{i}": {"n": count - 1} for i in range(3)}


def test_published_messages_carry_the_stored_versions(cloud: Cloud) -> None:
    """What a node is told is what the database holds: every accepted version is stored."""
    cloud.create_node("n1")
    server, publisher, _ = serve(cloud)
    topics = cloud.settings.topics
    server.handle_batch([message(topics, "n1", Suffix.SHADOW_UPDATE, {"state": {"reported": {"i": i}}})
                         for i in range(20)])
    accepted: list[Published] = [m for m in publisher.messages if m.topic.endswith("/update/accepted")]
    assert [m.json()["version"] for m in accepted] == list(range(1, 21))
    with cloud.store.session() as session:
        assert get_document(session, "default", "n1").reported == {"i": 19}


def test_integers_beyond_64_bits_keep_their_digits_through_the_store(cloud: Cloud) -> None:
    # orjson reads such integers as floats; the store reads them with the standard library
    cloud.create_node("n1")
    big = 2**70 + 1
    server, _, _ = serve(cloud)
    server.handle(*message(cloud.settings.topics, "n1", Suffix.SHADOW_UPDATE,
                           {"state": {"reported": {"big": big, "small": 1.5}}}))
    with cloud.store.session() as session:
        reported = get_document(session, "default", "n1").reported
    assert reported["big"] == big and isinstance(reported["big"], int)
    assert reported["small"] == 1.5


def test_updates_over_mqtt_are_timed_one_observation_each(cloud: Cloud) -> None:
    cloud.create_node("n1")
    server, _, metrics = serve(cloud)
    topics = cloud.settings.topics
    server.handle_batch([
        message(topics, "n1", Suffix.SHADOW_UPDATE, {"state": {"reported": {"a": i}}}) for i in range(3)
    ] + [message(topics, "n1", Suffix.SHADOW_GET, {})])
    histogram = metrics.update_seconds.labels(source="mqtt")
    count = next(sample.value for metric in histogram.collect() for sample in metric.samples
                 if sample.name.endswith("_count"))
    assert count == 3


def _moving_under_the_first_attempt(moved: str) -> tuple[Any, list[dict[str, int]]]:
    """A ``locked_write`` change that reports ``attempt: N`` on every document it is given,
    and the versions it was given each attempt; during the first, node ``moved`` changes
    under it (a writer that does not lock, in the batch's own transaction)."""
    attempts: list[dict[str, int]] = []

    def change(connection: Connection, documents: dict[tuple[str, str], Any]) -> int:
        attempts.append({node: document.version for (_, node), document in documents.items()})
        if len(attempts) == 1:
            cursor = connection.connection.cursor()
            cursor.execute(f"UPDATE shadows SET version = version + 1 WHERE node = '{moved}'")
            cursor.close()
        for key, document in documents.items():
            request = UpdateRequest(state={"reported": {"attempt": len(attempts)}})
            documents[key] = apply_update(document, request, now=1, limits=DEFAULT_LIMITS).document
        return len(attempts)

    return change, attempts


def test_a_swap_that_finds_its_row_moved_writes_nothing_of_the_batch_and_runs_again(cloud: Cloud) -> None:
    """The compare-and-swap holds although the rows are locked: a row changed under the
    batch -- here by a writer that does not lock, in the batch's own transaction -- rolls
    back every write of the attempt, and the batch runs again from a fresh read."""
    cloud.create_node("n1")
    cloud.create_node("n2")
    change, attempts = _moving_under_the_first_attempt("n2")

    assert locked_write(cloud.store, [("default", "n1"), ("default", "n2")], change) == 2
    assert attempts == [{"n1": 0, "n2": 0}, {"n1": 0, "n2": 0}]  # the bump was rolled back too
    with cloud.store.session() as session:
        for node in ("n1", "n2"):
            document = get_document(session, "default", node)
            assert (document.version, document.reported) == (1, {"attempt": 2})


def test_swaps_beyond_one_statement_are_all_checked(cloud: Cloud, monkeypatch: pytest.MonkeyPatch) -> None:
    """On PostgreSQL a batch's swaps go as statements of ``SWAP_CHUNK`` rows: every row of
    every statement counts: all five rows swapped in three statements, and a row moved
    under the first statement sends the batch round again."""
    monkeypatch.setattr(shadow_sql, "SWAP_CHUNK", 2)
    nodes = [f"n{index}" for index in range(5)]
    for node in nodes:
        cloud.create_node(node)
    change, _ = _moving_under_the_first_attempt("n0")

    assert locked_write(cloud.store, [("default", node) for node in nodes], change) == 2
    with cloud.store.session() as session:
        assert [(get_document(session, "default", node).version,
                 get_document(session, "default", node).reported) for node in nodes] == [
            (1, {"attempt": 2})] * 5
