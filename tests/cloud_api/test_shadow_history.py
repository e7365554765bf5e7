"""Shadow history: what is recorded (and what is not), with its writer, in the transaction
of the swap; the background prune keeps the newest rows of each node it looks at."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from cloud_api.runtime import Cloud
from cloud_api.store import shadow_history
from cloud_api.store.shadow_writing import Update, write_batch
from schemas.shadow import parse_update_request
from tests.cloud_api.conftest import Clock

NS = "/v1/namespaces/default"


def reported(cloud: Cloud, node: str, state: dict[str, Any], *, now: int = 1) -> None:
    op = Update("default", node, request=parse_update_request({"state": {"reported": state}},
                                                               writable=("reported",)))
    write_batch(cloud.store, [op], now=now, limits=cloud.settings.limits)
    assert op.error is None


def rows(cloud: Cloud, node: str | None = None) -> int:
    query = select(func.count()).select_from(shadow_history.HISTORY)
    if node is not None:
        query = query.where(shadow_history.HISTORY.c.node == node)
    with cloud.store.connect() as connection:
        return int(connection.execute(query).scalar() or 0)


@pytest.fixture
def nodes(cloud: Cloud, api: Any) -> list[str]:
    names = ["a", "b"]
    for name in names:
        assert api.post(f"{NS}/nodes", json={"name": name}).status_code == 201
    return names


def test_heartbeats_and_usage_leave_no_revision(cloud: Cloud, nodes: list[str]) -> None:
    reported(cloud, "a", {"nodestats": {"cpu": 1}})
    reported(cloud, "a", {"appstats": {"web": {"instances": [{"cpu": 3}]}}, "properties": {"t": 1}})
    assert rows(cloud, "a") == 0
    reported(cloud, "a", {"apps": {"web": "1"}, "appstats": {"web": {"status": "Running",
                                                                       "instances": []}}})
    assert rows(cloud, "a") == 1
    with cloud.store.connect() as connection:
        item, = shadow_history.node_history(connection, "default", "a")
    assert item["writer"] == "node" and item["section"] == "reported"
    assert item["change"] == {"apps": {"web": "1"}, "appstats": {"web": {"status": "Running"}}}


def test_a_batch_records_every_node_at_once_and_a_rejected_update_nothing(
    cloud: Cloud, nodes: list[str]
) -> None:
    ops = [Update("default", node, request=parse_update_request(
        {"state": {"reported": {"apps": {"web": "1"}}}}, writable=("reported",)))
        for node in ("a", "b", "missing")]
    write_batch(cloud.store, ops, now=1, limits=cloud.settings.limits)
    assert [op.error is None for op in ops] == [True, True, False]
    assert (rows(cloud, "a"), rows(cloud, "b"), rows(cloud)) == (1, 1, 2)


def test_prune_keeps_the_newest_rows_of_the_nodes_written_since_the_last_run(
    cloud: Cloud, nodes: list[str], clock: Clock
) -> None:
    for index in range(12):
        reported(cloud, "a", {"apps": {"web": str(index)}}, now=index)
    for index in range(3):
        reported(cloud, "b", {"apps": {"web": str(index)}}, now=index)
    with cloud.store.connect() as connection:
        deleted, mark = shadow_history.prune(connection, keep=5)
        connection.commit()
    assert deleted == 7 and (rows(cloud, "a"), rows(cloud, "b")) == (5, 3)
    with cloud.store.connect() as connection:
        newest = shadow_history.node_history(connection, "default", "a", limit=1)
        assert newest[0]["apps"]["reported"] == {"web": "11"}
        assert shadow_history.prune(connection, keep=1, since_id=mark) == (0, mark)  # nothing new
    reported(cloud, "b", {"apps": {"web": "9"}})
    with cloud.store.connect() as connection:
        deleted, _ = shadow_history.prune(connection, keep=1, since_id=mark)
        connection.commit()
    assert deleted == 3 and (rows(cloud, "a"), rows(cloud, "b")) == (5, 1)  # only b looked at
