"""``GET /metrics``: prometheus_client's exposition of latency histograms, process metrics
and the fleet gauges read from the database at each scrape (SQLite and PostgreSQL)."""

from __future__ import annotations

import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

from cloud_api.metrics import BRIDGE_ERRORS, BRIDGE_MESSAGES, UPDATES_REJECTED, Metrics
from cloud_api.runtime import Cloud
from cloud_api.services.nodes import set_online
from tests.cloud_api.conftest import seed_shadow

NODES = "/v1/namespaces/default/nodes"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value, parsed as Prometheus would."""
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def activated(cloud: Cloud, node: str) -> None:
    cloud.create_node(node)
    cloud.activate(cloud.issue_activation(node).token)


def test_fleet_gauges_count_nodes_by_state_and_apps_by_status(
    cloud: Cloud, anonymous: httpx.Client, api: httpx.Client
) -> None:
    activated(cloud, "up")
    activated(cloud, "down")
    activated(cloud, "cut")
    cloud.create_node("fresh")
    with cloud.store.session() as session:
        for node, online in (("up", True), ("down", False), ("cut", True)):
            set_online(session, "default", node, online=online, now=1)
    cloud.revoke_node("cut")
    running = {"web": {"status": "Running", "version": "2"}, "db": {"status": "Failed", "version": "1"}}
    seed_shadow(cloud, "up", desired={"apps": {"web": "2", "db": "1"}},
                reported={"apps": {"web": "2", "db": "1"}, "appstats": running}, version=1)
    seed_shadow(cloud, "down", desired={"apps": {"web": "2"}}, reported={}, version=1)
    # without an admin token, no gauge names a namespace or an app
    public = anonymous.get("/metrics").text
    assert samples(public)[("tether_nodes_online", ())] == 1
    assert 'namespace="default"' not in public and 'app="web"' not in public
    seen = samples(api.get("/metrics").text)
    for state, number in (("online", 1), ("offline", 1), ("revoked", 1), ("new", 1)):
        assert seen[("tether_nodes", (("namespace", "default"), ("state", state)))] == number
    assert seen[("tether_nodes_online", ())] == 1
    app = (("app", "web"), ("namespace", "default"))
    assert seen[("tether_app_nodes", (*app, ("status", "Running")))] == 1
    assert seen[("tether_app_nodes", (*app, ("status", "Unreported")))] == 1
    assert seen[("tether_app_nodes", (("app", "db"), ("namespace", "default"), ("status", "Failed")))] == 1


def test_requests_are_timed_by_route_template_method_and_code(
    cloud: Cloud, api: httpx.Client, anonymous: httpx.Client
) -> None:
    cloud.create_node("n1")
    assert api.get(f"{NODES}/n1").status_code == 200
    assert api.get(f"{NODES}/nope").status_code == 404
    api.patch(f"{NODES}/n1/shadow", json={"state": {"desired": {"a": 1}}})
    seen = samples(anonymous.get("/metrics").text)
    route = "/v1/namespaces/{namespace}/nodes/{node}"
    count = "tether_http_request_duration_seconds_count"
    assert seen[(count, (("code", "200"), ("method", "GET"), ("route", route)))] == 1
    assert seen[(count, (("code", "404"), ("method", "GET"), ("route", route)))] == 1
    assert seen[("tether_shadow_update_duration_seconds_count", (("source", "rest"),))] == 1
    assert ("tether_shadow_update_duration_seconds_count", (("source", "mqtt"),)) in seen
    assert seen[("process_resident_memory_bytes", ())] > 0  # the process collector
    assert ("python_gc_collections_total", (("generation", "0"),)) in seen
    anonymous.get("/no/such/path")
    seen = samples(anonymous.get("/metrics").text)
    assert seen[(count, (("code", "404"), ("method", "GET"), ("route", "<unmatched>")))] == 1


def test_counters_keep_their_names_and_labels() -> None:
    metrics = Metrics()
    metrics.inc(BRIDGE_MESSAGES, direction="in")
    metrics.inc(BRIDGE_MESSAGES, 2, direction="in")
    metrics.inc(UPDATES_REJECTED, source="mqtt", code="409")
    metrics.inc(UPDATES_REJECTED, code="409", source="mqtt")  # the order of labels is free
    metrics.inc(BRIDGE_ERRORS, kind="overload")
    assert metrics.value(BRIDGE_MESSAGES, direction="in") == 3
    assert metrics.value(UPDATES_REJECTED, source="mqtt", code="409") == 2
    text = metrics.render().decode()
    assert 'tether_bridge_messages_total{direction="in"} 3.0' in text
    assert 'tether_shadow_updates_rejected_total{code="409",source="mqtt"} 2.0' in text
    assert "_created" not in text


def test_an_increment_on_the_bridge_path_stays_cheap() -> None:
    """The bridge counts every message: an increment must cost microseconds, not more."""
    metrics = Metrics()
    rounds = 20_000
    started = time.perf_counter()
    for _ in range(rounds):
        metrics.inc(BRIDGE_MESSAGES, direction="in")
    per_call = (time.perf_counter() - started) / rounds
    assert metrics.value(BRIDGE_MESSAGES, direction="in") == rounds
    assert per_call < 20e-6, f"{per_call * 1e6:.1f} µs per increment"
