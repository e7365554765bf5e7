"""Lists at fleet size: keyset pages return each node exactly once (10,000 of them), label
selectors filter in the database exactly as the matcher does, unknown parameters are 400,
and the fleet summary counts in SQL."""

from __future__ import annotations

import random
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from sqlmodel import col

from cloud_api.runtime import Cloud
from cloud_api.services.nodes import create_nodes, page_nodes, set_online
from cloud_api.store.models import Node, NodeCertificate, Shadow
from schemas.labels import parse_selector

NS = "/v1/namespaces/default"


def all_pages(api: httpx.Client, path: str, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    token = None
    while True:
        response = api.get(path, params={**params, **({"continue": token} if token else {})})
        assert response.status_code == 200, response.text
        items += response.json()
        token = response.headers.get("X-Continue")
        if token is None:
            return items


def test_paging_over_10000_nodes_returns_each_exactly_once(api: httpx.Client, cloud: Cloud,
                                                           clock: Any) -> None:
    rng = random.Random(7)
    sites = ["paris", "lyon", "nice", "lille"]
    items = [{"name": f"n{i:05d}", "labels": {"site": rng.choice(sites),
                                              **({"gpu": "yes"} if i % 7 == 0 else {})}}
             for i in range(10_000)]
    with cloud.store.session() as session:
        for start in range(0, len(items), 1000):
            create_nodes(session, "default", items[start:start + 1000], now=1)
        session.exec(update(Node).where(col(Node.name).in_(  # one statement, not 1,112 commits
            [f"n{index:05d}" for index in range(0, 10_000, 9)])).values(online=True))
        session.commit()
    started = time.monotonic()
    seen = all_pages(api, f"{NS}/nodes", limit=1000)
    elapsed = time.monotonic() - started
    print(f"paged 10,000 nodes by 1,000 in {elapsed:.2f}s")
    names = [node["name"] for node in seen]
    assert len(names) == 10_000 and len(set(names)) == 10_000 and names == sorted(names)
    assert elapsed < 20, f"paging 10,000 nodes took {elapsed:.1f}s"

    labels = {item["name"]: item["labels"] for item in items}
    for text in ("site in (lyon,nice),gpu", "site!=paris,!gpu"):
        expected = sorted(n for n, l in labels.items() if parse_selector(text).matches(l))
        got = [node["name"] for node in all_pages(api, f"{NS}/nodes", limit=2500,
                                                  labelSelector=text)]
        assert got == expected, text
    online = all_pages(api, f"{NS}/nodes", limit=500, online="true", labelSelector="gpu")
    assert [n["name"] for n in online] == [f"n{i:05d}" for i in range(0, 10_000, 63)]


def test_unknown_parameters_and_bad_tokens_are_refused(api: httpx.Client) -> None:
    refused = api.get(f"{NS}/nodes", params={"labelselector": "a=b"})
    assert refused.status_code == 400
    assert "labelselector" in refused.json()["message"] and "labelSelector" in refused.json()["message"]
    assert api.get(f"{NS}/apps", params={"online": "true"}).status_code == 400
    assert api.post(f"{NS}/nodes", params={"force": "1"}, json={"name": "x"}).status_code == 400
    assert api.get(f"{NS}/nodes", params={"labelSelector": "a in ("}).status_code == 400
    assert api.get(f"{NS}/nodes", params={"continue": "bm90IGEgdG9rZW4"}).status_code == 400
    assert api.get(f"{NS}/nodes", params={"limit": 0}).status_code == 400
    for index in range(3):
        api.post(f"{NS}/configs", json={"name": f"c{index}", "data": {}})
    page = api.get(f"{NS}/configs", params={"limit": 2})
    token = page.headers["X-Continue"]
    assert api.get(f"{NS}/nodes", params={"continue": token}).status_code == 400  # another list's
    assert [c["name"] for c in api.get(f"{NS}/configs", params={"continue": token}).json()] == ["c2"]


def test_resources_filter_by_their_labels(api: httpx.Client) -> None:
    for name, tier in (("a", "front"), ("b", "back"), ("c", "front")):
        api.post(f"{NS}/configs", json={"name": name, "data": {}, "labels": {"tier": tier}})
    got = api.get(f"{NS}/configs", params={"labelSelector": "tier=front"}).json()
    assert [c["name"] for c in got] == ["a", "c"]


@pytest.mark.parametrize("n", [0, 3])
def test_the_fleet_summary_counts_nodes_and_app_statuses(api: httpx.Client, cloud: Cloud,
                                                         n: int) -> None:
    for index in range(n):
        api.post(f"{NS}/nodes", json={"name": f"s{index}"})
    with cloud.store.session() as session:
        if n:
            set_online(session, "default", "s0", online=True, now=5)
            reported = [{"appstats": {"web": {"status": "Running"}, "db": {"status": "Failed"}}},
                        {"appstats": {"web": {"status": "Failed"}}}, {"appstats": "junk"}]
            for index, value in enumerate(reported):
                session.exec(update(Shadow).where(Shadow.node == f"s{index}")  # type: ignore[arg-type]
                             .values(reported=value))
            session.add(NodeCertificate(serial="1f", namespace="default", node="s2", issued_at=1,
                                        not_after=2_000_000_000, revoked_at=3))  # revoked
            session.add(NodeCertificate(serial="2f", namespace="default", node="s1", issued_at=1,
                                        not_after=2_000_000_000, revoked_at=3))
            session.add(NodeCertificate(serial="3f", namespace="default", node="s1", issued_at=4,
                                        not_after=2_000_000_000))  # renewed: not revoked
            session.commit()
    body = api.get(f"{NS}/nodes:summary").json()
    if not n:
        assert body["nodes"] == {"total": 0, "online": 0, "offline": 0, "revoked": 0}
        return
    assert body["nodes"] == {"total": 3, "online": 1, "offline": 2, "revoked": 1}
    assert body["apps"] == {"byStatus": {"Failed": 2, "Running": 1},
                            "byApp": {"db": {"Failed": 1}, "web": {"Failed": 1, "Running": 1}}}


SELECTORS = ["", "site=paris", "site==paris", "site!=paris", "site in (paris,lyon)",
             "site notin (paris,lyon)", "gpu", "!gpu", "tether.io/rack=r1.a", "site,!gpu",
             "tether.io/rack!=r1.a,site in (nice)", "empty=", "empty!="]


@pytest.mark.parametrize("text", SELECTORS)
def test_the_database_selects_what_the_matcher_selects(cloud: Cloud, text: str) -> None:
    """``selector_sql`` against ``Selector.matches``, operator by operator, on labels with
    prefixed keys, dotted values, empty values and missing keys."""
    labels = [{"site": "paris"}, {"site": "lyon", "gpu": "yes"}, {"site": "nice"}, {},
              {"tether.io/rack": "r1.a", "site": "nice"}, {"tether.io/rack": "r1.b"},
              {"empty": ""}, {"empty": "x", "gpu": ""}]
    with cloud.store.session() as session:
        create_nodes(session, "default", [{"name": f"n{i}", "labels": l}
                                          for i, l in enumerate(labels)], now=1)
        got = [n.name for n in page_nodes(session, "default", selector=parse_selector(text)).items]
    expected = [f"n{i}" for i, l in enumerate(labels) if parse_selector(text).matches(l)]
    assert got == expected
