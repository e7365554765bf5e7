"""The shadow loop through a whole stack: REST -> cloud -> broker -> edge process -> back."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from launcher.mosquitto import PrivateMosquitto, mosquitto_binary
from launcher.stack import LocalStack
from tests.e2e.conftest import Api, node_reported, wait_until


def test_desired_properties_come_back_reported_with_an_empty_delta(make_stack: Callable[..., LocalStack], make_api: Callable[[LocalStack], Api]) -> None:
    api = make_api(make_stack())
    facts = wait_until(lambda: node_reported(api), what="the node's facts")["node"]
    assert {"hostname", "os", "arch", "kernel", "python", "backend"} <= set(facts)
    assert api.node()["online"] is True

    assert api.patch_desired({"properties": {"fan": "on", "rpm": 1200}}).status_code == 200
    wait_until(lambda: api.converged({"fan": "on", "rpm": 1200}), timeout=5, what="reported properties")

    # null deletes the property on both sides
    assert api.patch_desired({"properties": {"rpm": None}}).status_code == 200
    doc = wait_until(lambda: api.converged({"fan": "on"}), timeout=5, what="the property removed")
    assert doc["state"]["desired"]["properties"] == {"fan": "on"}


def test_through_mosquitto(make_stack: Callable[..., LocalStack], make_api: Callable[[LocalStack], Api], mosquitto_url: str) -> None:
    api = make_api(make_stack(external_mqtt_url=mosquitto_url))
    wait_until(lambda: node_reported(api), what="the node's facts via Mosquitto")
    api.patch_desired({"properties": {"via": "mosquitto"}}).raise_for_status()
    wait_until(lambda: api.converged({"via": "mosquitto"}), timeout=5, what="reported via Mosquitto")


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_restarting_the_cloud_loses_nothing(
    make_stack: Callable[..., LocalStack], make_api: Callable[[LocalStack], Api], backend: str, request: pytest.FixtureRequest
) -> None:
    database_url = None
    if backend == "postgres":
        database_url = request.getfixturevalue("postgres_database")
    stack = make_stack(database_url=database_url)
    api = make_api(stack)
    wait_until(lambda: node_reported(api), what="the node's facts")
    api.patch_desired({"properties": {"kept": 1}}).raise_for_status()
    before = wait_until(lambda: api.converged({"kept": 1}), timeout=5, what="convergence")

    stack.restart_cloud()
    api = make_api(stack)
    after = api.shadow()
    assert after["state"]["desired"] == before["state"]["desired"]
    assert after["state"]["reported"]["properties"] == {"kept": 1}
    assert after["version"] >= before["version"]
    # the edge stayed up; the loop still works through the new cloud
    api.patch_desired({"properties": {"kept": 2}}).raise_for_status()
    wait_until(lambda: api.converged({"kept": 2}), timeout=5, what="convergence after the restart")


def test_restarting_the_broker_while_the_edge_is_connected(make_stack: Callable[..., LocalStack], make_api: Callable[[LocalStack], Api]) -> None:
    stack = make_stack()
    api = make_api(stack)
    wait_until(lambda: node_reported(api), what="the node's facts")
    stack.restart_broker()
    # desired changes while the edge may still be reconnecting: it converges anyway
    api.patch_desired({"properties": {"after": "restart"}}).raise_for_status()
    wait_until(lambda: api.converged({"after": "restart"}), timeout=15, what="convergence after a broker restart")
    wait_until(lambda: api.node()["online"], timeout=5, what="the node online again")


def test_the_node_goes_offline_when_the_edge_stops(make_stack: Callable[..., LocalStack], make_api: Callable[[LocalStack], Api]) -> None:
    stack = make_stack()
    api = make_api(stack)
    wait_until(lambda: api.node()["online"], what="online")
    stack.stop_edge()
    wait_until(lambda: not api.node()["online"], timeout=5, what="offline after a clean stop")


@pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto is not installed")
def test_restarting_mosquitto_while_the_edge_is_connected(
    make_stack: Callable[..., LocalStack], make_api: Callable[[LocalStack], Api]
) -> None:
    with PrivateMosquitto() as mosquitto:
        api = make_api(make_stack(external_mqtt_url=mosquitto.url))
        wait_until(lambda: node_reported(api), what="the node's facts via Mosquitto")
        mosquitto.restart()
        api.patch_desired({"properties": {"after": "mosquitto restart"}}).raise_for_status()
        wait_until(lambda: api.converged({"after": "mosquitto restart"}), timeout=15, what="convergence")
        wait_until(lambda: api.node()["online"], timeout=5, what="the node online again")
