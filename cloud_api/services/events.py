"""Database work of the events API: a page of a namespace's events.

Events are written by ``cloud_api.store.event_writing`` (batched, off the shadow path).

Paging: newest first by ``(last_time, id)``; ``continue`` is an opaque token naming the last
row of the previous page, so a page never repeats a row that did not change meanwhile (an
event that happens again moves to the front, as its time changed).
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from typing import Any

from sqlalchemy import and_, or_, select
from sqlmodel import Session

from cloud_api.errors import CloudError
from cloud_api.store.engine import table_of
from cloud_api.store.models import Event
from schemas.errors import ErrorCode

_EVENTS = table_of(Event)
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


# -- listing -----------------------------------------------------------------------------
def encode_continue(last_time: int, row_id: int) -> str:
    return base64.urlsafe_b64encode(json.dumps([last_time, row_id]).encode()).decode().rstrip("=")


def decode_continue(token: str) -> tuple[int, int]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        last_time, row_id = json.loads(raw)
        if not (isinstance(last_time, int) and isinstance(row_id, int)):
            raise TypeError(token)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise CloudError("invalid continue token: pass the 'continue' of the previous page",
                         code=ErrorCode.BAD_REQUEST) from exc
    return last_time, row_id


def check_limit(limit: int | None) -> int:
    if limit is None:
        return DEFAULT_LIMIT
    if not 1 <= limit <= MAX_LIMIT:
        raise CloudError(f"limit must be from 1 to {MAX_LIMIT}", code=ErrorCode.BAD_REQUEST)
    return limit


def list_events(
    session: Session, namespace: str, *, node: str | None = None, app: str | None = None,
    limit: int | None = None, continue_: str | None = None,
) -> tuple[list[Event], str | None]:
    """A page of the namespace's events, newest first, and the token of the next page."""
    size = check_limit(limit)
    query = select(Event).where(_EVENTS.c.namespace == namespace)
    if node is not None:
        query = query.where(_EVENTS.c.node == node)
    if app is not None:
        query = query.where(_EVENTS.c.app == app)
    if continue_:
        last_time, row_id = decode_continue(continue_)
        query = query.where(or_(_EVENTS.c.last_time < last_time,
                                and_(_EVENTS.c.last_time == last_time, _EVENTS.c.id < row_id)))
    query = query.order_by(_EVENTS.c.last_time.desc(), _EVENTS.c.id.desc()).limit(size + 1)
    rows = list(session.execute(query).scalars())
    if len(rows) <= size:
        return rows, None
    rows = rows[:size]
    last = rows[-1]
    assert last.id is not None
    return rows, encode_continue(last.last_time, last.id)


def to_public(row: Event) -> dict[str, Any]:
    """The contract's item: ``{"time", "node", "app", "service", "kind", "message", "count"}``."""
    return {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(row.last_time)),
            "node": row.node, "app": row.app, "service": row.service, "kind": row.kind,
            "message": row.message, "count": row.count}
