"""Events from two observations of the backend: pure, so every backend gets the same events.

The engine observes the backend on every change (a process exited, a pod restarted) and at
every period; comparing one observation with the previous one says what happened to each
instance in between, whichever backend runs it:

- an instance seen for the first time, running: **Started**;
- its restart count grew: **Crashed** (``count`` = how many times), with how it ended;
- it runs again after it was not running or crashed: **Restarted**;
- it became Failed: **BackOff** while it crash-loops (restarts are delayed), **Failed**
  when it cannot start at all.

Messages name the instance and are stable (no delays or times in them), so that the same
thing happening again is the same event with a higher count.
"""

from __future__ import annotations

from collections.abc import Mapping

from edge_runtime.backends.base import InstanceStatus, ObservedApp
from schemas.events import AppEvent, EventKind
from schemas.resources import AppStatus

CANNOT_START = "cannot start"


def derive_events(
    previous: Mapping[str, ObservedApp], current: Mapping[str, ObservedApp], *, now: int
) -> list[AppEvent]:
    """What happened between two observations, as events (count 1 unless several)."""
    events: list[AppEvent] = []
    for name, app in sorted(current.items()):
        before = {i.name: i for i in previous[name].instances} if name in previous else {}
        for instance in app.instances:
            events += _instance_events(name, before.get(instance.name), instance, now=now)
    return events


def _instance_events(
    app: str, before: InstanceStatus | None, now_seen: InstanceStatus, *, now: int
) -> list[AppEvent]:
    service = now_seen.service or now_seen.name
    name = now_seen.name

    def event(kind: EventKind, message: str, count: int = 1) -> AppEvent:
        return AppEvent(now, app, service, kind, message, count)

    running = now_seen.status is AppStatus.RUNNING
    if before is None:
        return [event(EventKind.STARTED, f"{name} started")] if running else []
    found: list[AppEvent] = []
    crashes = now_seen.restarts - before.restarts
    if crashes > 0:
        how = now_seen.last_exit or "exit code unknown"
        found.append(event(EventKind.CRASHED, f"{name} exited: {how}", crashes))
    if now_seen.status is AppStatus.FAILED and before.status is not AppStatus.FAILED:
        cannot = now_seen.cause.startswith(CANNOT_START)
        kind = EventKind.FAILED if cannot else EventKind.BACK_OFF
        found.append(event(kind, f"{name}: {now_seen.cause or 'failed'}"))
    if running and (before.status is not AppStatus.RUNNING or crashes > 0):
        if now_seen.restarts > 0:
            found.append(event(EventKind.RESTARTED, f"{name} restarted"))
        else:
            found.append(event(EventKind.STARTED, f"{name} started"))
    return found
