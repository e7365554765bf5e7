"""App events a node publishes (crashes, restarts, back-off, starts): shape, kinds, bounds.

Why it is here: the node derives and deduplicates events, the cloud stores and lists them,
and both must agree on the message. Events are deduplicated like Kubernetes events: one
event per ``(app, service, kind, message)``, with a ``count`` of how often it happened and
the ``time`` it last did.

On ``{root}/{ns}/{node}/events``, node -> cloud (QoS 1)::

    {"events": [{"time": 1764100000, "app": "web", "service": "api", "kind": "Crashed",
                 "message": "api-0 exited: exit code 3", "count": 2}, ...]}
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from schemas.names import is_valid_name

MAX_EVENTS_PER_MESSAGE = 100
MAX_MESSAGE_CHARS = 1024
MAX_EVENTS_BYTES = 256 * 1024  # one events message


class EventKind(StrEnum):
    STARTED = "Started"  # an instance runs for the first time
    CRASHED = "Crashed"  # an instance's process (or container) ended
    RESTARTED = "Restarted"  # an instance runs again after it ended
    BACK_OFF = "BackOff"  # an instance crash-loops: restarts are delayed
    FAILED = "Failed"  # an instance cannot start at all


@dataclass(frozen=True)
class AppEvent:
    time: int
    app: str
    service: str
    kind: EventKind
    message: str
    count: int = 1

    @property
    def key(self) -> tuple[str, str, str, str]:
        """What makes two occurrences the same event."""
        return self.app, self.service, self.kind.value, self.message

    def wire(self) -> dict[str, Any]:
        return {"time": self.time, "app": self.app, "service": self.service,
                "kind": self.kind.value, "message": self.message, "count": self.count}


def parse_event(body: Any) -> AppEvent | None:
    """One event of an ``events`` message, or None when it is not the contract's shape."""
    if not isinstance(body, dict):
        return None
    time, count = body.get("time"), body.get("count", 1)
    app, service, message = body.get("app"), body.get("service", ""), body.get("message", "")
    try:
        kind = EventKind(str(body.get("kind")))
    except ValueError:
        return None
    if (isinstance(time, bool) or not isinstance(time, int) or time < 0
            or isinstance(count, bool) or not isinstance(count, int) or count < 1
            or not is_valid_name(app) or not isinstance(service, str)
            or (service and not is_valid_name(service)) or not isinstance(message, str)):
        return None
    assert isinstance(app, str)
    return AppEvent(time, app, service, kind, message[:MAX_MESSAGE_CHARS], count)


def parse_events(body: Any) -> list[AppEvent]:
    """The well-formed events of a message (at most ``MAX_EVENTS_PER_MESSAGE``)."""
    items = body.get("events") if isinstance(body, dict) else None
    if not isinstance(items, list):
        return []
    parsed = (parse_event(item) for item in items[:MAX_EVENTS_PER_MESSAGE])
    return [event for event in parsed if event is not None]
