"""Matching off the request path: a stored write's match is owed until done, survives a
cloud that stops before doing it, and paces its fan-out on the bridge's backlog."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from sqlmodel import select

from cloud_api.mqtt.transport import MemoryPublisher
from cloud_api.rematching import Rematcher
from cloud_api.runtime import Cloud
from cloud_api.services import matching
from cloud_api.services.resources import put_resource
from cloud_api.services.secrets_crypto import SecretBox
from cloud_api.services.shadows import get_document
from cloud_api.settings import CloudSettings
from cloud_api.store.models import PendingMatch
from schemas.resources import ResourceKind

APP = {"name": "web", "selector": "", "services": [{"name": "main", "image": "nginx:1"}]}


def desired(cloud: Cloud, node: str) -> object:
    with cloud.store.session() as session:
        return get_document(session, "default", node).desired.get("apps")


def pending(cloud: Cloud) -> int:
    with cloud.store.session() as session:
        return len(session.exec(select(PendingMatch)).all())


def test_a_match_owed_when_the_cloud_stopped_is_done_by_the_next_one(
    make_settings: Callable[..., CloudSettings],
) -> None:
    with Cloud(make_settings()) as cloud:
        cloud.create_node("n1")
        cloud.rematcher.close()  # it dies before doing the match the write owes
        with cloud.store.session() as session:
            put_resource(session, SecretBox.from_settings(cloud.settings), "default",
                         ResourceKind.APP, APP, description="", labels={}, now=1, create=True)
        assert desired(cloud, "n1") == {} and pending(cloud) == 1
    with Cloud(make_settings()) as cloud:  # another process, or a replica's poll
        deadline = time.monotonic() + 10
        while desired(cloud, "n1") != {"web": "1"}:
            assert time.monotonic() < deadline, "the owed match was never done"
            time.sleep(0.05)
        assert cloud.rematcher.wait_idle(10) and pending(cloud) == 0


def test_a_fan_out_waits_for_the_bridge_backlog_between_batches(
    make_settings: Callable[..., CloudSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    with Cloud(make_settings()) as cloud:
        cloud.rematcher.close()
        for i in range(5):
            cloud.create_node(f"n{i}")
        with cloud.store.session() as session:
            put_resource(session, SecretBox.from_settings(cloud.settings), "default",
                         ResourceKind.APP, APP, description="", labels={}, now=1, create=True)
        backlog = iter([900, 800, 600, 100] * 10)
        asked: list[int] = []

        def reading() -> int:
            asked.append(next(backlog))
            return asked[-1]

        settings = make_settings(rematch_backlog=500, rematch_pace_seconds=5)
        published = MemoryPublisher()
        rematcher = Rematcher(cloud.store, settings, publisher=lambda: published,
                              now=lambda: 2, backlog=reading)
        monkeypatch.setattr(matching, "BATCH", 2)  # 5 nodes: 3 batches, 2 waits
        assert rematcher.run_once() == 5
        assert asked == [900, 800, 600, 100, 900, 800, 600, 100]  # waited until <= 500, twice
        assert {desired(cloud, f"n{i}") == {"web": "1"} for i in range(5)} == {True}
