"""The shared update vectors, end to end through the cloud: REST for ``desired``, the bridge
logic for ``reported``, both for requests that name neither. One cloud per database serves
every case (each case has a node of its own), which keeps this quick."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from cloud_api.metrics import Metrics
from cloud_api.mqtt.serving import ShadowServer
from cloud_api.mqtt.transport import MemoryPublisher
from cloud_api.runtime import Cloud
from cloud_api.services.shadows import get_document
from cloud_api.settings import CloudSettings
from schemas.topics import Suffix
from tests.cloud_api.conftest import BACKENDS, admin_token, postgres_schema, seed_shadow, serving
from tests.schemas.conformance import VECTORS


def _paths(case: dict[str, Any]) -> list[str]:
    state = case["request"].get("state")
    sections = set(state) if isinstance(state, dict) else set()
    if sections == {"desired"}:
        return ["rest"]
    if sections == {"reported"}:
        return ["mqtt"]
    return ["rest", "mqtt"]


CASES = [
    pytest.param(index, path, id=f"{path}-{case['name']}")
    for index, case in enumerate(VECTORS["update"])
    for path in _paths(case)
]


class Harness:
    def __init__(self, cloud: Cloud, client: httpx.Client) -> None:
        self.cloud = cloud
        self.client = client
        self.publisher = MemoryPublisher()
        settings = cloud.settings
        self.server = ShadowServer(
            cloud.store,
            self.publisher,
            topics=settings.topics,
            limits=settings.limits,
            metrics=Metrics(),
        )

    def apply(self, node: str, path: str, request: Any) -> int | None:
        """Send ``request``; the error code, or None if it was accepted."""
        if path == "rest":
            path = f"/v1/namespaces/default/nodes/{node}/shadow"
            response = self.client.patch(path, json=request)
            return None if response.status_code == 200 else int(response.json()["code"])
        topics = self.cloud.settings.topics
        topic = topics.topic("default", node, Suffix.SHADOW_UPDATE)
        self.server.handle(topic, json.dumps(request).encode())
        rejected = self.publisher.on(topics.topic("default", node, Suffix.SHADOW_UPDATE_REJECTED))
        accepted = self.publisher.on(topics.topic("default", node, Suffix.SHADOW_UPDATE_ACCEPTED))
        assert len(rejected) + len(accepted) == 1, "exactly one reply per request"
        return int(rejected[0]["code"]) if rejected else None


@pytest.fixture(scope="module", params=BACKENDS)
def harness(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Harness]:
    data_dir: Path = tmp_path_factory.mktemp("conformance")
    with ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{data_dir / 'tether.db'}"
        else:
            url = stack.enter_context(postgres_schema(request.getfixturevalue("postgres_url")))
        cloud = stack.enter_context(Cloud(CloudSettings(data_dir=data_dir, database_url=url)))
        base_url = stack.enter_context(serving(cloud.app))
        headers = {"Authorization": f"Bearer {admin_token(cloud)}"}
        client = stack.enter_context(httpx.Client(base_url=base_url, headers=headers, timeout=30))
        yield Harness(cloud, client)


@pytest.mark.parametrize(("index", "path"), CASES)
def test_update_vector(harness: Harness, index: int, path: str) -> None:
    case = VECTORS["update"][index]
    node = f"case-{index}-{path}"
    before, expect = case["before"], case["expect"]
    harness.cloud.create_node(node)
    seed_shadow(
        harness.cloud,
        node,
        desired=before["desired"],
        reported=before["reported"],
        version=before["version"],
    )

    error = harness.apply(node, path, case["request"])

    with harness.cloud.store.session() as session:
        document = get_document(session, "default", node).to_json()
    if "error" in expect:
        assert error == expect["error"]
        assert document["state"]["desired"] == before["desired"]
        assert document["state"]["reported"] == before["reported"]
        assert document["version"] == before["version"]
    else:
        assert error is None
        assert document["state"]["desired"] == expect["desired"]
        assert document["state"]["reported"] == expect["reported"]
        assert document["state"]["delta"] == expect["delta"]
        assert document["version"] == expect["version"]
