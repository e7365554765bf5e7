"""The sync state machine on a fake transport and a fake clock: no broker, no threads."""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise
from typing import Any

import pytest

from edge_runtime.syncing import RETRY_SECONDS, ShadowSync
from schemas.payloads import encode_json
from schemas.shadow import JSONObject, ShadowDocument
from schemas.topics import Suffix
from tests.edge_runtime.fakes import FACTS, FakeClock, FakeTransport, MemoryCloud

MakeSync = Callable[..., ShadowSync]


# -- driving the sync --------------------------------------------------------------------
def send(sync: ShadowSync, suffix: Suffix, payload: Any) -> None:
    sync.handle(suffix, encode_json(payload))


def document(desired: JSONObject, reported: JSONObject | None = None, *, version: int,
             token: str | None = None) -> JSONObject:
    body = ShadowDocument(desired=desired, reported=reported or {}, version=version).to_json()
    if token is not None:
        body["clientToken"] = token
    return body


def fetched(sync: ShadowSync, transport: FakeTransport, desired: JSONObject,
            reported: JSONObject | None = None, *, version: int) -> None:
    """Answer the sync's last shadow/get."""
    token = transport.of(Suffix.SHADOW_GET)[-1]["clientToken"]
    answer = document(desired, reported, version=version, token=token)
    send(sync, Suffix.SHADOW_GET_ACCEPTED, answer)


def ack(sync: ShadowSync, update: JSONObject, *, version: int) -> None:
    send(sync, Suffix.SHADOW_UPDATE_ACCEPTED, {"state": update["state"], "metadata": {},
                                               "version": version, "timestamp": 1,
                                               "clientToken": update["clientToken"]})


def reject(sync: ShadowSync, request: JSONObject, code: int,
           suffix: Suffix = Suffix.SHADOW_UPDATE_REJECTED) -> None:
    send(sync, suffix, {"code": code, "message": "no", "clientToken": request["clientToken"],
                        "timestamp": 1})


def delta(sync: ShadowSync, state: JSONObject, *, version: int) -> None:
    send(sync, Suffix.SHADOW_UPDATE_DELTA, {"state": state, "version": version, "timestamp": 1})


def suffixes(transport: FakeTransport) -> list[Suffix]:
    return [suffix for suffix, _, _ in transport.take()]


def only_update(transport: FakeTransport) -> JSONObject:
    (suffix, update, _), = transport.take()
    assert suffix is Suffix.SHADOW_UPDATE
    return update


def synced(make_sync: MakeSync, transport: FakeTransport, desired: JSONObject, *,
           version: int = 5, **kwargs: Any) -> ShadowSync:
    """Connected, fetched ``desired`` at ``version`` and had its first report acknowledged."""
    sync = make_sync(**kwargs)
    sync.start()
    sync.connected()
    fetched(sync, transport, desired, version=version)
    ack(sync, transport.of(Suffix.SHADOW_UPDATE)[-1], version=version + 1)
    transport.take()
    return sync


def sent_report(sync: ShadowSync, transport: FakeTransport, clock: FakeClock,
                reported: JSONObject) -> JSONObject:
    """Report ``reported``, let the debounce pass, return the update that went out."""
    sync.report(reported)
    clock.advance(1)
    sync.tick()
    return only_update(transport)


# -- connecting and fetching ---------------------------------------------------------------
def test_connect_publishes_online_status_then_asks_for_the_document(
    make_sync: MakeSync, transport: FakeTransport
) -> None:
    sync = make_sync()
    sync.start()
    sync.connected()
    (s1, status, retained), (s2, get, _) = transport.take()
    assert (s1, status["online"], retained) == (Suffix.STATUS, True, True)
    assert s2 is Suffix.SHADOW_GET and get["clientToken"]


def test_fetched_document_is_reconciled_and_reported_as_a_diff(
    make_sync: MakeSync, transport: FakeTransport
) -> None:
    sync = make_sync()
    sync.start()
    sync.connected()
    fetched(sync, transport, {"properties": {"fan": "on"}},
            {"properties": {"old": 1}, "node": FACTS}, version=3)
    update = transport.of(Suffix.SHADOW_UPDATE)[-1]
    assert update["state"] == {"reported": {"properties": {"fan": "on", "old": None}}}
    assert sync.document is not None and sync.document.version == 3


def test_an_old_get_answer_for_another_request_is_ignored(
    make_sync: MakeSync, transport: FakeTransport
) -> None:
    sync = synced(make_sync, transport, {"properties": {"fan": "on"}}, version=4)
    old = document({"properties": {"fan": "off"}}, version=2, token="old-1")
    send(sync, Suffix.SHADOW_GET_ACCEPTED, old)
    assert sync.document is not None and sync.document.desired == {"properties": {"fan": "on"}}


def test_get_rejection_is_retried(make_sync: MakeSync, transport: FakeTransport,
                                  clock: FakeClock) -> None:
    sync = make_sync()
    sync.start()
    sync.connected()
    reject(sync, transport.take()[-1][1], 500, Suffix.SHADOW_GET_REJECTED)
    clock.advance(RETRY_SECONDS)
    sync.tick()
    assert suffixes(transport) == [Suffix.SHADOW_GET]


# -- deltas ---------------------------------------------------------------------------------
@pytest.mark.parametrize("version", [4, 5])
def test_delta_not_newer_than_the_document_is_dropped(
    make_sync: MakeSync, transport: FakeTransport, version: int
) -> None:
    sync = synced(make_sync, transport, {"properties": {"fan": "on"}}, version=4)  # ack: 5
    delta(sync, {"properties": {"fan": "off"}}, version=version)
    assert transport.take() == []
    assert sync.document is not None and sync.document.desired == {"properties": {"fan": "on"}}


def test_newer_delta_is_merged_reconciled_and_reported(
    make_sync: MakeSync, transport: FakeTransport
) -> None:
    desired = {"apps": {"web": "v1", "db": "v1"}, "properties": {"fan": "on"}}
    sync = synced(make_sync, transport, desired, version=4)
    delta(sync, {"apps": {"db": None}, "properties": {"fan": "off"}}, version=6)
    assert sync.document is not None
    assert sync.document.desired == {"apps": {"web": "v1"}, "properties": {"fan": "off"}}
    assert only_update(transport)["state"] == {"reported": {"properties": {"fan": "off"}}}


def test_version_gap_triggers_a_refetch(make_sync: MakeSync, transport: FakeTransport) -> None:
    sync = synced(make_sync, transport, {"properties": {"fan": "on"}}, version=4)
    delta(sync, {"properties": {"fan": "off"}}, version=9)
    assert suffixes(transport) == [Suffix.SHADOW_UPDATE, Suffix.SHADOW_GET]


def test_property_removed_from_desired_is_removed_from_reported(
    make_sync: MakeSync, transport: FakeTransport
) -> None:
    """The cloud's own update/accepted carries the exact desired patch, nulls included."""
    sync = synced(make_sync, transport, {"properties": {"fan": "on", "mode": "eco"}}, version=4)
    send(sync, Suffix.SHADOW_UPDATE_ACCEPTED, {"state": {"desired": {"properties": {"mode": None}}},
                                               "metadata": {}, "version": 6, "timestamp": 2})
    assert only_update(transport)["state"] == {"reported": {"properties": {"mode": None}}}


# -- reporting --------------------------------------------------------------------------
def test_quick_changes_are_coalesced_into_one_update_of_the_latest(
    make_sync: MakeSync, transport: FakeTransport, clock: FakeClock
) -> None:
    sync = synced(make_sync, transport, {})
    for n in (1, 2, 3):
        sync.report({"node": FACTS, "nodestats": {"cpu": n}})
        clock.advance(0.001)
    sync.tick()
    assert transport.take() == []  # still inside the debounce
    clock.advance(0.005)
    sync.tick()
    assert only_update(transport)["state"] == {"reported": {"nodestats": {"cpu": 3}}}


def test_changes_while_an_update_is_in_flight_go_out_after_its_ack(
    make_sync: MakeSync, transport: FakeTransport, clock: FakeClock
) -> None:
    sync = synced(make_sync, transport, {})
    first = sent_report(sync, transport, clock, {"node": FACTS, "cpu": 1, "extra": {"a": 1}})
    sync.report({"node": FACTS, "cpu": 2})
    clock.advance(1)
    sync.tick()
    assert transport.take() == []
    ack(sync, first, version=7)
    assert only_update(transport)["state"] == {"reported": {"cpu": 2, "extra": None}}


def test_conflict_rejection_fetches_the_document_again(
    make_sync: MakeSync, transport: FakeTransport, clock: FakeClock
) -> None:
    sync = synced(make_sync, transport, {})
    reject(sync, sent_report(sync, transport, clock, {"node": FACTS, "temp": 21}), 409)
    assert [suffix for suffix, _, _ in transport.sent] == [Suffix.SHADOW_GET]
    fetched(sync, transport, {}, {"node": FACTS}, version=9)
    assert transport.of(Suffix.SHADOW_UPDATE)[-1]["state"] == {"reported": {"temp": 21}}


def test_busy_rejection_retries_after_a_short_delay(
    make_sync: MakeSync, transport: FakeTransport, clock: FakeClock
) -> None:
    sync = synced(make_sync, transport, {})
    update = sent_report(sync, transport, clock, {"node": FACTS, "temp": 21})
    reject(sync, update, 429)
    assert transport.take() == []
    clock.advance(RETRY_SECONDS)
    sync.tick()
    assert only_update(transport)["state"] == update["state"]


def test_reports_made_offline_are_cached_and_delivered_on_reconnect(
    make_sync: MakeSync, transport: FakeTransport, clock: FakeClock
) -> None:
    sync = synced(make_sync, transport, {"properties": {"fan": "on"}}, version=4)
    sync.disconnected()
    sync.report({"node": FACTS, "properties": {"fan": "on"}, "temp": 30})
    clock.advance(1)
    sync.tick()
    assert transport.take() == []
    restarted = make_sync()  # another process on the same cache would start from it
    assert restarted.local_reported is not None and restarted.local_reported["temp"] == 30
    sync.connected()
    fetched(sync, transport, {"properties": {"fan": "on"}},
            {"node": FACTS, "properties": {"fan": "on"}}, version=5)
    assert transport.of(Suffix.SHADOW_UPDATE)[-1]["state"] == {"reported": {"temp": 30}}


def test_a_report_waiting_offline_sets_no_deadline_in_the_past(
    make_sync: MakeSync, transport: FakeTransport, clock: FakeClock
) -> None:
    """Offline, a pending report waits for the document: the runner must sleep, not spin
    on a deadline it can never meet (an agent offline with a report pending burned a core)."""
    sync = synced(make_sync, transport, {"properties": {"fan": "on"}}, version=4)
    sync.disconnected()
    sync.report({"node": FACTS, "properties": {"fan": "on"}, "temp": 30})
    clock.advance(1)
    sync.tick()
    deadline = sync.next_deadline()
    assert deadline is None or deadline > clock.now
    sync.connected()  # connected but not synced yet: still nothing to send before get/accepted
    sync.tick()
    deadline = sync.next_deadline()
    assert deadline is not None and deadline > clock.now


def test_cached_desired_state_is_reconciled_before_any_connection(
    make_sync: MakeSync, transport: FakeTransport
) -> None:
    synced(make_sync, transport, {"properties": {"fan": "on"}})
    calls: list[JSONObject] = []

    class Recording:
        def reconcile(self, desired: JSONObject) -> JSONObject:
            calls.append(desired)
            return {"properties": desired.get("properties", {})}

    make_sync(reconciler=Recording()).start()
    assert calls == [{"properties": {"fan": "on"}}]
    assert transport.take() == []


# -- heartbeat ----------------------------------------------------------------------------
def test_heartbeat_refreshes_status_when_everything_is_acknowledged(
    make_sync: MakeSync, transport: FakeTransport, clock: FakeClock
) -> None:
    sync = synced(make_sync, transport, {"properties": {"fan": "on"}})
    clock.advance(30)
    sync.tick()
    (suffix, status, retained), = transport.take()
    assert (suffix, status["online"], retained) == (Suffix.STATUS, True, True)


def test_heartbeat_resends_a_rejected_report(
    make_sync: MakeSync, transport: FakeTransport, clock: FakeClock
) -> None:
    sync = synced(make_sync, transport, {})
    update = sent_report(sync, transport, clock, {"node": FACTS, "temp": 21})
    reject(sync, update, 400)
    clock.advance(29)
    sync.tick()
    assert only_update(transport)["state"] == update["state"]


def test_a_lost_ack_is_given_up_after_the_request_timeout_and_the_document_refetched(
    make_sync: MakeSync, transport: FakeTransport, clock: FakeClock
) -> None:
    sync = synced(make_sync, transport, {})
    sent_report(sync, transport, clock, {"node": FACTS, "temp": 21})
    clock.advance(1.5)  # younger than the 2 s request timeout: wait
    sync.tick()
    assert transport.take() == []
    clock.advance(0.5)
    sync.tick()
    assert suffixes(transport) == [Suffix.SHADOW_GET]


def test_an_unanswered_get_is_asked_again_with_backoff(
    make_sync: MakeSync, transport: FakeTransport, clock: FakeClock
) -> None:
    """After a broker restart the cloud may not be subscribed yet: nobody answers the get."""
    sync = make_sync()
    sync.start()
    sync.connected()
    transport.take()
    asked_at, last_get = [], None
    for _ in range(60):
        clock.advance(0.5)
        sync.tick()
        gets = [payload for suffix, payload, _ in transport.take() if suffix is Suffix.SHADOW_GET]
        if gets:
            asked_at.append(clock())
            last_get = gets[-1]
    gaps = [round(b - a, 1) for a, b in pairwise(asked_at)]
    assert asked_at[0] - 1000.0 <= 2.5 and gaps[:3] == [4.0, 8.0, 16.0]
    assert last_get is not None
    send(sync, Suffix.SHADOW_GET_ACCEPTED, document({}, version=1, token=last_get["clientToken"]))
    assert sync.synced


# -- bad input and the whole loop -----------------------------------------------------------
@pytest.mark.parametrize("suffix", [Suffix.SHADOW_GET_ACCEPTED, Suffix.SHADOW_UPDATE_DELTA,
                                    Suffix.SHADOW_UPDATE_ACCEPTED, Suffix.SHADOW_UPDATE_REJECTED])
@pytest.mark.parametrize("raw", [b"", b"\xff\xfe", b"[1]", b'{"state": 3, "version": 1}',
                                 b'{"state": {}, "version": -1}',
                                 b'{"state": {"desired": 1}, "version": true}'])
def test_malformed_messages_are_dropped(
    make_sync: MakeSync, transport: FakeTransport, suffix: Suffix, raw: bytes
) -> None:
    sync = synced(make_sync, transport, {"properties": {"fan": "on"}})
    before = sync.document
    sync.handle(suffix, raw)
    assert sync.document == before


def test_converges_with_the_real_shadow_algebra(
    make_sync: MakeSync, transport: FakeTransport, clock: FakeClock
) -> None:
    """Node and MemoryCloud exchange messages until quiet: reported mirrors desired."""
    cloud = MemoryCloud(echo_desired_accepted=True)
    sync = make_sync()
    sync.start()

    def pump() -> None:
        for _ in range(20):
            clock.advance(0.01)
            sync.tick()
            outgoing = transport.take()
            if not outgoing:
                return
            for suffix, payload, _ in outgoing:
                for reply_suffix, reply in cloud.answer(suffix, payload):
                    send(sync, reply_suffix, reply)

    def change(patch: JSONObject) -> None:
        for suffix, payload in cloud.set_desired(patch):
            send(sync, suffix, payload)
        pump()

    sync.connected()
    pump()
    change({"properties": {"fan": "on", "mode": "eco", "limits": {"max": 3}}})
    change({"properties": {"mode": None, "limits": {"max": 4}}})
    sync.disconnected()
    cloud.set_desired({"properties": {"fan": "off"}})  # missed while offline
    sync.connected()
    pump()
    assert cloud.document.reported["properties"] == {"fan": "off", "limits": {"max": 4}}
    assert cloud.document.reported["node"] == FACTS
