"""No input crashes a process: garbage on every topic a node may publish, through the stack.

The cloud and broker tests fuzz their own parts; this proves the whole chain (broker ACL,
bridge queue, workers, store) keeps serving after each kind of bad input.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest

from launcher.stack import LocalStack
from tests.e2e.conftest import Api
from tests.e2e.test_third_party_client import Credentials, Device, activate_node

GARBAGE: list[tuple[str, bytes]] = [
    ("empty", b""),
    ("random bytes", bytes(range(256)) * 4),
    ("not UTF-8", b'{"state": "\xff\xfe"}'),
    ("not JSON", b"{state: reported}"),
    ("wrong types", json.dumps({"state": {"reported": [1, 2]}, "version": "x", "clientToken": 7}).encode()),
    ("nesting depth 100", (b'{"a":' * 100) + b"1" + (b"}" * 100)),
    ("nesting depth 100 in state", b'{"state":{"reported":' + (b'{"a":' * 100) + b"1" + (b"}" * 100) + b"}}"),
    ("a JSON array", b"[1, 2, 3]"),
    ("huge number", b'{"state":{"reported":{"n": 1e999}}}'),
    ("lone surrogate", b'{"state":{"reported":{"s": "\\ud800"}}}'),
    ("1 MB", b'{"state":{"reported":{"blob":"' + b"x" * 1_000_000 + b'"}}}'),
]
SUFFIXES = ["shadow/get", "shadow/update", "resources/get", "status", "functions/app/fn/result"]


@pytest.fixture
def stack_and_device(
    make_stack: Callable[..., LocalStack], make_api: Callable[[LocalStack], Api]
) -> Iterator[tuple[LocalStack, Api, Credentials]]:
    stack = make_stack(edge=False)
    api = make_api(stack)
    yield stack, api, activate_node(api, "fuzzed")


def still_serving(api: Api, creds: Credentials, root: str) -> None:
    device = Device(creds, root)
    try:
        device.send("shadow/get", {"clientToken": "alive"})
        assert device.expect("shadow/get/accepted")["clientToken"] == "alive"
    finally:
        device.close()
    assert api.client.get("/healthz").status_code == 200
    assert api.shadow("fuzzed")["version"] == 0  # nothing bad was stored


def test_garbage_on_every_topic_is_refused_and_the_stack_keeps_serving(
    stack_and_device: tuple[LocalStack, Api, Credentials],
) -> None:
    stack, api, creds = stack_and_device
    device = Device(creds, stack.config.topic_root)
    try:
        for suffix in SUFFIXES:
            for _, payload in GARBAGE:
                device.send(suffix, payload)
        # every bad shadow/update got a rejection with a code, none an acceptance
        codes = set()
        for _ in range(len(GARBAGE)):
            codes.add(device.expect("shadow/update/rejected")["code"])
        assert codes <= {400, 413, 415}, codes
    finally:
        device.close()
    still_serving(api, creds, stack.config.topic_root)


def test_a_10_mb_payload_costs_only_its_sender_the_connection(
    stack_and_device: tuple[LocalStack, Api, Credentials],
) -> None:
    stack, api, creds = stack_and_device
    device = Device(creds, stack.config.topic_root)
    try:
        device.client.publish(f"{device.root}/shadow/update", b"x" * (10 * 1024 * 1024), qos=0)
    finally:
        device.close()
    still_serving(api, creds, stack.config.topic_root)
