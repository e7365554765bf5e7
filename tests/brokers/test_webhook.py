"""RabbitMQ through the cloud's webhook (``rabbitmq_auth_backend_http``): a node logs in
with its own credentials and no other's, is refused another node's topics, and once
revoked is cut off and refused at its next connect. Every decision is the cloud's: the
requests RabbitMQ made are checked to be there."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from urllib.parse import parse_qs

import httpx

from cloud_api.runtime import Cloud
from launcher.brokers import RunningBroker
from schemas.topics import Suffix
from tests.brokers.conftest import Clouds, Gate, Nodes, is_online, wait_for
from tests.brokers.nodes import NAMESPACE, connect_reason

BROKERS_ONLY = ("rabbitmq",)


def asked(gate: Gate, check: str, **expected: str) -> list[dict[str, str]]:
    """The webhook requests of kind ``check`` whose parameters include ``expected``."""
    found = []
    for path, body in gate.asked:
        params = {key: values[0] for key, values in parse_qs(body).items()}
        if path.endswith(f"/rabbitmq/{check}") and expected.items() <= params.items():
            found.append(params)
    return found


def test_rabbitmq_asks_the_cloud_about_logins_topics_and_revoked_nodes(
    clouds: Clouds, nodes: Nodes, broker: RunningBroker, gate: Gate,
    rest: Callable[[Cloud], httpx.Client],
) -> None:
    cloud = clouds.open(kick_revoked_sessions=True)
    gate.asked.clear()
    victim = nodes.connect(cloud, "-b")
    intruder = nodes.connect(cloud, "-a")
    assert intruder.credentials is not None and victim.credentials is not None
    user_a = intruder.credentials[0]
    # Its own credentials, and only those, log a node in; the cloud was asked each time.
    assert asked(gate, "user", username=user_a), "RabbitMQ never asked the cloud about node A"
    wrong = connect_reason(broker, victim.name, (victim.credentials[0], intruder.credentials[1] or ""))
    assert wrong != "Success", "node B's identity with node A's password got in"
    # Another node's topics: the subscription is refused (RabbitMQ 3.10 closes the
    # connection) and nothing of B's reaches A; a publish as B is refused too.
    closed = threading.Event()
    intruder.client.on_disconnect = lambda *args: closed.set()
    victim_root = victim.topics.node_root(NAMESPACE, victim.name)
    intruder.client.subscribe(f"{victim_root}/#", 1)
    assert closed.wait(10), "RabbitMQ kept a node subscribed to another node's topics"
    assert asked(gate, "topic", username=user_a, permission="read",
                 routing_key=f"{victim_root.replace('/', '.')}.#")
    api = rest(cloud)
    assert api.patch(f"/nodes/{victim.name}/shadow",
                     json={"state": {"desired": {"properties": {"secret": 1}}}}).status_code == 200
    victim.expect(Suffix.SHADOW_UPDATE_DELTA)
    wait_for(intruder.client.is_connected, what="node A back (paho reconnects)")
    intruder.client.publish(victim.topic(Suffix.SHADOW_UPDATE),
                            b'{"state": {"reported": {"forged": true}}}', qos=1)
    kind, _ = victim.request(Suffix.SHADOW_GET, {"clientToken": "after"})
    assert kind == "accepted"
    time.sleep(0.3)
    assert [t for t, _ in list(intruder.inbox.queue) if victim.name in t] == []
    assert "forged" not in api.get(f"/nodes/{victim.name}/shadow").json()["state"]["reported"]
    assert asked(gate, "topic", username=user_a, permission="write",
                 routing_key=f"{victim_root.replace('/', '.')}.shadow.update")
    # Revoked: its open session is cut (takeover) and its password no longer logs it in.
    wait_for(lambda: is_online(cloud, victim.name), what="node B online")
    cloud.revoke_node(victim.name)
    wait_for(lambda: not victim.client.is_connected(), what="the revoked node cut off")
    before = len(asked(gate, "user", username=victim.credentials[0]))
    assert connect_reason(broker, victim.name, victim.credentials) != "Success"
    assert len(asked(gate, "user", username=victim.credentials[0])) > before
    time.sleep(0.5)
    assert not victim.client.is_connected(), "the revoked node got back in"
