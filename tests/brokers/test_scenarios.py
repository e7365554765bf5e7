"""The conformance scenarios: the same end-to-end steps on every broker Tether supports.

Each runs a real cloud (``Cloud`` with its bridge) against a private broker and plays the
node with a paho client under the node's own identity. A broker lacking what a scenario
needs is skipped with the broker's declared reason (``launcher.brokers``).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import httpx

from cloud_api.runtime import Cloud
from launcher.brokers import Capability, RunningBroker
from schemas.topics import Suffix
from tests.brokers import probes
from tests.brokers.conftest import (
    BRIDGE_PASSWORD,
    BRIDGE_USER,
    TOPICS,
    Clouds,
    Nodes,
    is_online,
    needs,
    wait_for,
)
from tests.brokers.nodes import connect_reason


def test_online_then_offline_by_will(clouds: Clouds, nodes: Nodes) -> None:
    cloud = clouds.open()
    node = nodes.connect(cloud)
    wait_for(lambda: is_online(cloud, node.name), what="online after connect")
    node.die()
    wait_for(lambda: not is_online(cloud, node.name), what="offline by the will")


ROUND_TRIPS = 20


def test_desired_to_reported_round_trip(
    clouds: Clouds, nodes: Nodes, rest: Callable[[Cloud], httpx.Client],
    record_property: Callable[[str, object], None],
) -> None:
    """REST PATCH of desired -> delta to the node -> its report accepted, repeated; the
    median goes in the suite's summary."""
    cloud = clouds.open()
    node = nodes.connect(cloud)
    api = rest(cloud)
    kind, _ = node.request(Suffix.SHADOW_GET, {"clientToken": "g"})
    assert kind == "accepted"
    took = []
    for seq in range(ROUND_TRIPS):
        started = time.monotonic()
        patched = api.patch(f"/nodes/{node.name}/shadow",
                            json={"state": {"desired": {"properties": {"seq": seq}}}})
        assert patched.status_code == 200, patched.text
        delta = node.expect(Suffix.SHADOW_UPDATE_DELTA)
        assert delta["state"] == {"properties": {"seq": seq}}
        kind, accepted = node.request(
            Suffix.SHADOW_UPDATE, {"state": {"reported": delta["state"]}, "clientToken": f"u{seq}"}
        )
        assert kind == "accepted", accepted
        took.append(time.monotonic() - started)
    shadow = api.get(f"/nodes/{node.name}/shadow").json()
    assert shadow["state"]["reported"]["properties"] == {"seq": ROUND_TRIPS - 1}
    assert shadow["state"]["delta"] == {}
    p50 = statistics.median(took) * 1000
    record_property("round trip p50 ms", round(p50, 1))
    assert p50 < 1000, f"round trip p50 {p50:.0f} ms"


def test_app_rollout_reaches_running(
    clouds: Clouds, nodes: Nodes, rest: Callable[[Cloud], httpx.Client]
) -> None:
    cloud = clouds.open()
    node = nodes.connect(cloud, labels={"suite": nodes.unique})
    api = rest(cloud)
    app = {"name": "web", "selector": f"suite={nodes.unique}",
           "services": [{"name": "web", "command": ["sleep", "60"]}]}
    assert api.put("/apps/web", json=app).status_code in (200, 201)
    _, desired = node.next(
        lambda topic, body: topic in (node.topic(Suffix.SHADOW_UPDATE_DELTA),
                                      node.topic(Suffix.SHADOW_UPDATE_ACCEPTED))
        and "web" in (body.get("state", {}).get("desired", body.get("state", {})).get("apps") or {})
    )
    state = desired["state"].get("desired", desired["state"])
    version = state["apps"]["web"]
    kind, resources = node.request(
        Suffix.RESOURCES_GET,
        {"clientToken": "r1", "items": [{"kind": "app", "name": "web", "version": version}]},
    )
    assert kind == "accepted", resources
    assert resources["items"][0]["value"]["services"][0]["name"] == "web"
    kind, _ = node.request(Suffix.SHADOW_UPDATE, {"clientToken": "u1", "state": {"reported": {
        "apps": {"web": version}, "appstats": {"web": {"status": "Running"}}}}})
    assert kind == "accepted"
    rollout = api.get("/apps/web/nodes").json()
    assert [(row["node"], row["status"], row["online"]) for row in rollout["nodes"]] == [
        (node.name, "Running", True)
    ]


HEARTBEAT = 1.0  # the nodes' heartbeat in the liveness scenario
LIVENESS = 2.5 * HEARTBEAT  # the cloud's liveness_timeout_seconds there, as by default


def test_cloud_restart_with_a_node_that_died_meanwhile(
    clouds: Clouds, nodes: Nodes, record_property: Callable[[str, object], None]
) -> None:
    """A node killed while the cloud is down is shown offline within 3 heartbeats of the
    restarted cloud's bridge being up, whether or not the broker hands the cloud its
    retained will (RabbitMQ does not: liveness does it); a node alive all along stays
    online."""
    cloud = clouds.open(liveness_timeout_seconds=LIVENESS)
    dead = nodes.connect(cloud, "-dead")
    alive = nodes.connect(cloud, "-alive", heartbeat=HEARTBEAT)
    wait_for(lambda: is_online(cloud, dead.name) and is_online(cloud, alive.name),
             what="both nodes online")
    clouds.close(cloud)
    dead.die()
    time.sleep(0.3)  # the broker publishes the will while no cloud listens
    cloud = clouds.open(liveness_timeout_seconds=LIVENESS)
    took = wait_for(lambda: not is_online(cloud, dead.name), timeout=15,
                    what="the node that died while the cloud was down shown offline")
    record_property("offline after the restart s", round(took, 2))
    assert took < 3 * HEARTBEAT, f"offline only {took:.2f}s (> 3 heartbeats) after the restart"
    time.sleep(LIVENESS)  # long enough for a wrong sweep of the live node too
    assert is_online(cloud, alive.name), "a node alive all along was marked offline"


def test_two_replicas_split_the_traffic_with_a_share_group(
    clouds: Clouds, nodes: Nodes, broker: RunningBroker
) -> None:
    needs(broker, Capability.SHARED_SUBSCRIPTIONS)
    first = clouds.open(share_group="suite")
    second = clouds.open(share_group="suite")
    node = nodes.connect(first)
    for index in range(20):
        kind, _ = node.request(Suffix.SHADOW_GET, {"clientToken": f"g{index}"})
        assert kind == "accepted"
    time.sleep(0.3)  # a duplicate answer would arrive by now
    answers = []
    while not node.inbox.empty():
        answers.append(node.inbox.get_nowait())
    assert answers == [], f"{len(answers)} requests answered twice: both replicas got them"
    served = [cloud.context.metrics.value("tether_bridge_messages_total", direction="in")
              for cloud in (first, second)]
    assert all(count > 0 for count in served), f"one replica got nothing: {served}"


def test_a_share_group_is_proven_or_refused_loudly(
    clouds: Clouds, rest: Callable[[Cloud], httpx.Client], broker: RunningBroker
) -> None:
    """``--share-group`` on a broker without shared subscriptions never looks healthy:
    a refused SUBACK or a probe that never comes back is named by ``verify_share_group``
    (what ``tether cloud serve`` prints before it exits) and by /healthz."""
    cloud = clouds.open(share_group="suite", share_probe_seconds=1.5, ready=False)
    api = rest(cloud)
    problem = cloud.verify_share_group(timeout=10)
    health = api.get(str(api.base_url.copy_with(path="/healthz"))).json()
    if broker.kind.lacking(Capability.SHARED_SUBSCRIPTIONS) is None:
        assert problem is None and health["bridge"] == "connected", health
        return
    assert problem is not None and "$share/" in problem, problem
    assert health["bridge"] in ("failed", "disconnected") and health["bridgeError"] == problem


def test_a_revoked_node_is_cut_off_and_refused_at_reconnect(
    clouds: Clouds, nodes: Nodes, broker: RunningBroker
) -> None:
    needs(broker, Capability.REFUSES_REVOKED)
    cloud = clouds.open(kick_revoked_sessions=True)
    node = nodes.connect(cloud)
    wait_for(lambda: is_online(cloud, node.name), what="online")
    cloud.revoke_node(node.name)
    broker.nodes_changed()  # NATS: as `tether broker nats-config` would
    wait_for(lambda: not node.client.is_connected(), what="the revoked node cut off")
    assert node.credentials is not None
    assert connect_reason(broker, node.name, node.credentials) != "Success"
    assert not node.client.is_connected(), "the revoked node got back in"


def test_a_node_can_neither_read_nor_write_another_nodes_topics(
    clouds: Clouds, nodes: Nodes, broker: RunningBroker, rest: Callable[[Cloud], httpx.Client]
) -> None:
    needs(broker, Capability.PER_NODE_ACL)
    cloud = clouds.open()
    victim = nodes.connect(cloud, "-b")
    intruder = nodes.connect(cloud, "-a")
    intruder.client.subscribe(f"{victim.topics.node_root('default', victim.name)}/#", 1)
    api = rest(cloud)
    assert api.patch(f"/nodes/{victim.name}/shadow",
                     json={"state": {"desired": {"properties": {"secret": 1}}}}).status_code == 200
    victim.expect(Suffix.SHADOW_UPDATE_DELTA)
    intruder.client.publish(victim.topic(Suffix.SHADOW_UPDATE),
                            b'{"state": {"reported": {"forged": true}}}', qos=1)
    kind, _ = victim.request(Suffix.SHADOW_GET, {"clientToken": "after"})
    assert kind == "accepted"
    time.sleep(0.3)
    leaked = [topic for topic, _ in list(intruder.inbox.queue) if victim.name in topic]
    assert leaked == [], f"node A read node B's topics: {leaked}"
    reported = api.get(f"/nodes/{victim.name}/shadow").json()["state"]["reported"]
    assert "forged" not in reported, "node A wrote node B's reported state"


def test_a_function_call_is_relayed_to_the_node_and_back(
    clouds: Clouds, nodes: Nodes, rest: Callable[[Cloud], httpx.Client]
) -> None:
    cloud = clouds.open()
    node = nodes.connect(cloud)
    node.serve_functions(lambda payload: payload["a"] + payload["b"])
    wait_for(lambda: is_online(cloud, node.name), what="online")
    api = rest(cloud)
    response = api.post(f"/nodes/{node.name}/functions/calc/add:invoke", json={"a": 2, "b": 3})
    assert (response.status_code, response.json()) == (200, 5), response.text


def test_the_declared_capabilities_are_true(broker: RunningBroker) -> None:
    """What each broker is declared to lack is what it really lacks, and no more."""
    credentials = (BRIDGE_USER, BRIDGE_PASSWORD)
    observed = {
        Capability.RETAINED_ON_WILDCARD:
            probes.delivers_retained_on_wildcard(broker, credentials, TOPICS.root),
        Capability.SHARED_SUBSCRIPTIONS:
            probes.delivers_through_share_groups(broker, credentials, TOPICS.root),
    }
    declared = {capability: capability in broker.kind.capabilities for capability in observed}
    assert observed == declared
