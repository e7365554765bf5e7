"""End-to-end fixtures: a whole stack (broker, cloud, a real edge child process) per test."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from launcher.stack import LocalStack, StackConfig

T = TypeVar("T")


def wait_until(probe: Callable[[], T], *, timeout: float = 10.0, what: str = "condition") -> T:
    """Poll ``probe`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except (httpx.HTTPError, KeyError) as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last  # type: ignore[no-any-return]
        time.sleep(0.02)
    pytest.fail(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


class Api:
    """The REST API of a stack with the admin token."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.client = httpx.Client(
            base_url=stack.api_url, headers={"Authorization": f"Bearer {stack.admin_token()}"}, timeout=10
        )

    def shadow(self, node: str = "local", ns: str = "default") -> dict[str, Any]:
        response = self.client.get(f"/v1/namespaces/{ns}/nodes/{node}/shadow")
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    def patch_desired(self, desired: dict[str, Any], node: str = "local", ns: str = "default") -> httpx.Response:
        return self.client.patch(f"/v1/namespaces/{ns}/nodes/{node}/shadow", json={"state": {"desired": desired}})

    def node(self, node: str = "local", ns: str = "default") -> dict[str, Any]:
        response = self.client.get(f"/v1/namespaces/{ns}/nodes/{node}")
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    def converged(self, properties: dict[str, Any], node: str = "local") -> dict[str, Any] | None:
        doc = self.shadow(node)
        state = doc["state"]
        if state["reported"].get("properties") == properties and not state["delta"]:
            return doc
        return None


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[Callable[..., LocalStack]]:
    stacks: list[LocalStack] = []

    def make(**overrides: Any) -> LocalStack:
        config = StackConfig(
            data_dir=tmp_path / f"stack{len(stacks)}",
            http_port=0,
            mqtt_port=0,
            mqtts_port=0,
            topic_root=f"e2e{uuid.uuid4().hex[:8]}/tether/v1",
            **{"edge_env": {"TETHER_EDGE_RECONNECT_MAX_SECONDS": "1"}, **overrides},
        )
        stack = LocalStack(config)
        stacks.append(stack)
        return stack.start()

    yield make
    for stack in stacks:
        stack.stop()


@pytest.fixture
def make_api() -> Iterator[Callable[[LocalStack], Api]]:
    apis: list[Api] = []

    def make(stack: LocalStack) -> Api:
        apis.append(Api(stack))
        return apis[-1]

    yield make
    for api in apis:
        api.client.close()


def node_reported(api: Api, node: str = "local") -> dict[str, Any] | None:
    reported = api.shadow(node)["state"]["reported"]
    return reported if reported.get("node") else None


@pytest.fixture
def postgres_database(postgres_url: str) -> Iterator[str]:
    """A PostgreSQL URL with a schema of this test's own, dropped afterwards."""
    from tests.cloud_api.conftest import postgres_schema

    with postgres_schema(postgres_url) as url:
        yield url
