"""Events of a node: derived from two observations (pure), merged by key with a count,
published in bounded batches, kept while offline."""

from __future__ import annotations

import json

import pytest

from edge_runtime.backends.base import InstanceStatus, ObservedApp
from edge_runtime.events.deriving import derive_events
from edge_runtime.events.recording import EventRecorder
from schemas.events import AppEvent, EventKind, parse_events
from schemas.resources import AppStatus

R, P, F = AppStatus.RUNNING, AppStatus.PENDING, AppStatus.FAILED


def seen(*instances: InstanceStatus) -> dict[str, ObservedApp]:
    return {"web": ObservedApp("web", "v1", R, instances=instances)}


def inst(status: AppStatus, restarts: int = 0, cause: str = "", last_exit: str = "") -> InstanceStatus:
    return InstanceStatus("api-0", status, cause, restarts, service="api", last_exit=last_exit)


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        (None, inst(R), [(EventKind.STARTED, "api-0 started", 1)]),
        (None, inst(P), []),
        (inst(R), inst(R), []),
        (inst(R), inst(P, 1, "restarting after exit code 3", "exit code 3"),
         [(EventKind.CRASHED, "api-0 exited: exit code 3", 1)]),
        (inst(P, 1, last_exit="exit code 3"), inst(R, 1, last_exit="exit code 3"),
         [(EventKind.RESTARTED, "api-0 restarted", 1)]),
        (inst(R), inst(R, 2, last_exit="killed by SIGKILL"),  # two crashes between looks
         [(EventKind.CRASHED, "api-0 exited: killed by SIGKILL", 2),
          (EventKind.RESTARTED, "api-0 restarted", 1)]),
        (inst(P, 2), inst(F, 3, "crashing: exit code 3", "exit code 3"),
         [(EventKind.CRASHED, "api-0 exited: exit code 3", 1),
          (EventKind.BACK_OFF, "api-0: crashing: exit code 3", 1)]),
        (inst(F, 3, "crashing: exit code 3"), inst(F, 4, "crashing: exit code 3", "exit code 3"),
         [(EventKind.CRASHED, "api-0 exited: exit code 3", 1)]),  # no new BackOff while it stays
        (inst(P), inst(F, 0, "cannot start: No such file"),
         [(EventKind.FAILED, "api-0: cannot start: No such file", 1)]),
    ],
)
def test_derive_events(
    before: InstanceStatus | None, after: InstanceStatus, expected: list[tuple[EventKind, str, int]]
) -> None:
    previous = seen(before) if before is not None else {}
    events = derive_events(previous, seen(after), now=100)
    assert [(e.kind, e.message, e.count) for e in events] == expected
    assert all(e.app == "web" and e.service == "api" and e.time == 100 for e in events)


class Published:
    def __init__(self) -> None:
        self.messages: list[list[dict[str, object]]] = []
        self.online = True

    def publish(self, body: bytes) -> None:
        self.messages.append(json.loads(body)["events"])


def crash(count: int = 1, time: int = 1) -> AppEvent:
    return AppEvent(time, "web", "api", EventKind.CRASHED, "api-0 exited: exit code 3", count)


def test_the_recorder_merges_repeats_and_waits_while_offline() -> None:
    out = Published()
    recorder = EventRecorder(publish=out.publish, connected=lambda: out.online, max_pending=2)
    out.online = False
    recorder.record([crash(time=1), crash(2, time=5), crash(time=3)])
    assert recorder.flush() == 0 and out.messages == []  # offline: kept
    recorder.record([AppEvent(6, "web", "api", EventKind.STARTED, "api-0 started"),
                     AppEvent(7, "db", "db", EventKind.STARTED, "db-0 started")])
    assert recorder.dropped == 1  # bounded: two distinct events wait at most here
    out.online = True
    assert recorder.flush() == 2
    assert out.messages[0][0] == {"time": 5, "app": "web", "service": "api", "kind": "Crashed",
                                  "message": "api-0 exited: exit code 3", "count": 4}
    assert parse_events({"events": out.messages[0]})[0].count == 4
    assert recorder.flush() == 0


def test_the_recorder_sends_at_most_100_events_a_message() -> None:
    out = Published()
    recorder = EventRecorder(publish=out.publish, connected=lambda: True)
    recorder.record([AppEvent(1, "web", "api", EventKind.STARTED, f"api-{i} started") for i in range(250)])
    assert [recorder.flush() for _ in range(4)] == [100, 100, 50, 0]
