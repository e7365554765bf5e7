"""The shadow service: reads, and the compare-and-swap under concurrent writers (both DBs)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from cloud_api.errors import NotFound
from cloud_api.runtime import Cloud
from cloud_api.services import shadows
from schemas.errors import ErrorCode, Rejection
from schemas.shadow import UpdateOutcome


def update(cloud: Cloud, payload: Any) -> UpdateOutcome:
    with cloud.store.session() as session:
        now = cloud.context.now()
        return shadows.update_shadow(
            session, "default", "n1", payload, writable=("reported",), now=now
        )


def document(cloud: Cloud) -> dict[str, Any]:
    with cloud.store.session() as session:
        return shadows.get_document(session, "default", "n1").to_json()


def test_a_new_node_has_an_empty_shadow_at_version_0(cloud: Cloud) -> None:
    cloud.create_node("n1")
    assert document(cloud) == {  # desired.apps is there, so a stray reported app gets a null
        "state": {"desired": {"apps": {}}, "reported": {}, "delta": {}},
        "metadata": {"desired": {}, "reported": {}},
        "version": 0,
        "timestamp": 0,
    }


def test_an_update_is_stored_with_metadata_and_timestamp(cloud: Cloud) -> None:
    cloud.create_node("n1")
    outcome = update(cloud, {"state": {"reported": {"fan": "on"}}, "clientToken": "t1"})
    stored = document(cloud)
    assert stored == outcome.document.to_json()
    assert stored["metadata"]["reported"] == {"fan": {"timestamp": cloud.context.now()}}
    assert stored["version"] == 1 and stored["timestamp"] == cloud.context.now()
    assert outcome.accepted_payload()["clientToken"] == "t1"


@pytest.mark.parametrize("payload", [{"state": {"reported": {"a": 1}}}, "garbage"])
def test_a_missing_node_is_404(cloud: Cloud, payload: Any) -> None:
    with pytest.raises(Rejection) as caught:
        update(cloud, payload)
    # a malformed request is refused before the node is looked up
    expected = ErrorCode.NOT_FOUND if isinstance(payload, dict) else ErrorCode.BAD_REQUEST
    assert caught.value.code == expected
    with pytest.raises(NotFound):
        document(cloud)


class RaceBarrier:
    """Wraps ``apply_update`` so two threads both read version N before either writes."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.barrier = threading.Barrier(2, timeout=10)
        self.calls: dict[str, int] = {}
        self._local = threading.local()
        real = shadows.apply_update

        def racing(*args: Any, **kwargs: Any) -> UpdateOutcome:
            name = threading.current_thread().name
            self.calls[name] = self.calls.get(name, 0) + 1
            if not getattr(self._local, "raced", False):
                self._local.raced = True
                self.barrier.wait()
            return real(*args, **kwargs)

        monkeypatch.setattr(shadows, "apply_update", racing)


def _race(cloud: Cloud, payloads: list[dict[str, Any]]) -> list[UpdateOutcome | Rejection]:
    def attempt(payload: dict[str, Any]) -> UpdateOutcome | Rejection:
        try:
            return update(cloud, payload)
        except Rejection as exc:
            return exc

    with ThreadPoolExecutor(max_workers=len(payloads)) as pool:
        return list(pool.map(attempt, payloads))


def test_two_writers_of_one_version_one_wins_the_other_gets_409(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    cloud.create_node("n1")
    RaceBarrier(monkeypatch)
    results = _race(cloud, [{"state": {"reported": {k: 1}}, "version": 0} for k in ("a", "b")])
    won = [r for r in results if isinstance(r, UpdateOutcome)]
    lost = [r for r in results if isinstance(r, Rejection)]
    assert len(won) == 1 and len(lost) == 1
    assert lost[0].code == ErrorCode.CONFLICT
    assert document(cloud)["version"] == 1
    assert document(cloud)["state"]["reported"] == won[0].document.reported


def test_two_writers_without_version_the_loser_retries_and_both_land(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    cloud.create_node("n1")
    race = RaceBarrier(monkeypatch)
    results = _race(cloud, [{"state": {"reported": {k: 1}}} for k in ("a", "b")])
    assert all(isinstance(r, UpdateOutcome) for r in results)
    assert sorted(race.calls.values()) == [1, 2], "the loser merged again onto the newer document"
    assert document(cloud)["state"]["reported"] == {"a": 1, "b": 1}
    assert document(cloud)["version"] == 2


def test_many_concurrent_writers_lose_nothing(cloud: Cloud) -> None:
    cloud.create_node("n1")
    writers = 20
    results = _race(cloud, [{"state": {"reported": {f"k{i}": i}}} for i in range(writers)])
    assert all(isinstance(r, UpdateOutcome) for r in results), results
    stored = document(cloud)
    assert stored["state"]["reported"] == {f"k{i}": i for i in range(writers)}
    assert stored["version"] == writers
    versions = sorted(r.document.version for r in results if isinstance(r, UpdateOutcome))
    assert versions == list(range(1, writers + 1))


def test_a_swap_lost_every_time_ends_in_429(cloud: Cloud, monkeypatch: pytest.MonkeyPatch) -> None:
    cloud.create_node("n1")
    monkeypatch.setattr(shadows, "_compare_and_swap", lambda *a, **k: False)
    monkeypatch.setattr(shadows, "_BACKOFF_SECONDS", 0.0)
    with pytest.raises(Rejection) as caught:
        update(cloud, {"state": {"reported": {"a": 1}}})
    assert caught.value.code == ErrorCode.TOO_MANY_REQUESTS
    assert document(cloud)["version"] == 0
