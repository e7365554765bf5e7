"""Losing the broker: the will marks the node offline, the agent reconnects with backoff
and the shadow converges, including a change made while the node was cut off."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from edge_runtime.agent import EdgeAgent
from edge_runtime.sync import Backoff
from tests.edge_runtime.mqttcloud import MqttCloud, TcpProxy

StartAgent = Callable[..., EdgeAgent]
NS = "default"


@pytest.fixture
def proxy(mosquitto_url: str) -> Iterator[TcpProxy]:
    tcp_proxy = TcpProxy(mosquitto_url)
    yield tcp_proxy
    tcp_proxy.close()


@pytest.mark.mosquitto
def test_will_then_reconnect_with_backoff_and_convergence(
    cloud: MqttCloud, agents: StartAgent, proxy: TcpProxy, unique_name: str
) -> None:
    def properties() -> object:
        return cloud.document(NS, unique_name).reported.get("properties")

    def online() -> object:
        status = cloud.last_status(NS, unique_name)
        return status and status["online"]

    cloud.set_desired(NS, unique_name, {"properties": {"fan": "on"}})
    agent = agents(unique_name, url=proxy.url)
    cloud.wait_for(lambda: properties() == {"fan": "on"} and online() is True,
                   what="the first sync")

    proxy.down()  # RST both ways, and refuse new connections
    cloud.wait_for(lambda: online() is False, what="the will's offline status")
    cloud.set_desired(NS, unique_name, {"properties": {"fan": "off", "speed": 3}})
    attempts_before = proxy.attempts
    time.sleep(1.0)
    retries = proxy.attempts - attempts_before
    assert 2 <= retries <= 10, f"{retries} attempts in 1 s: backoff 0.05..0.4 s expects about 4"

    proxy.up()
    cloud.wait_for(lambda: properties() == {"fan": "off", "speed": 3} and online() is True,
                   timeout=5, what="convergence after reconnecting")
    assert agent.link is not None and agent.link.connected


def test_backoff_doubles_with_jitter_up_to_the_cap_and_resets() -> None:
    low, high = Backoff(0.5, 30, rng=lambda: 0.0), Backoff(0.5, 30, rng=lambda: 0.999999)
    lows = [low.next() for _ in range(9)]
    highs = [high.next() for _ in range(9)]
    assert lows == [0.25, 0.5, 1, 2, 4, 8, 15, 15, 15]
    assert [round(h, 3) for h in highs] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    low.reset()
    assert low.next() == 0.25
