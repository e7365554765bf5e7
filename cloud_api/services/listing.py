"""Lists at fleet size: keyset pages, opaque continue tokens, label selectors in SQL.

Why it exists: every list endpoint pages the same way and filters labels the same way,
and both must hold at 10,000 rows, so it is written once:

- Pages are keyset pages: ordered by a unique key (a name, an id), a page is the first
  ``limit`` rows after the last key of the previous page. Each row is returned exactly
  once while nothing is created or deleted, and a row created meanwhile appears once or
  not at all; no page costs more than an index range scan, however deep.
- The continue token is opaque to clients: base64url of ``{"s": scope, "a": after}``, so
  one list's token is refused by another (400), as is a token that was tampered with.
- ``labelSelector`` (Kubernetes syntax, ``schemas.labels.parse_selector``) becomes a SQL
  condition on the JSON ``labels`` column (``->>`` on PostgreSQL, ``json_extract`` on
  SQLite), so the database filters and pages together. ``!=`` and ``notin`` also select
  rows without the key, as in Kubernetes and as ``Selector.matches`` does.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, true

from schemas.errors import ErrorCode, Rejection
from schemas.labels import Operator, Requirement, Selector, parse_selector

MAX_LIMIT = 5000


@dataclass(frozen=True)
class Page:
    items: list[Any]
    continue_token: str | None = None


def encode_continue(scope: str, after: Any) -> str:
    raw = json.dumps({"s": scope, "a": after}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_continue(token: str, scope: str, expect: type = str) -> Any:
    """The key (of type ``expect``) a page starts after; 400 for a token of another list,
    or one that is not a token."""
    try:
        padded = token + "=" * (-len(token) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeError):
        value = None
    if (not isinstance(value, dict) or value.get("s") != scope
            or type(value.get("a")) is not expect):
        raise Rejection(ErrorCode.BAD_REQUEST,
                        "invalid continue token for this list: list again without 'continue'")
    return value["a"]


def _requirement_sql(labels: Any, requirement: Requirement) -> ColumnElement[bool]:
    value: ColumnElement[Any] = labels[requirement.key].as_string()
    op, values = requirement.operator, sorted(requirement.values)
    if op is Operator.EXISTS:
        return value.is_not(None)
    if op is Operator.DOES_NOT_EXIST:
        return value.is_(None)
    inside: ColumnElement[bool] = value.in_(values)
    if op in (Operator.EQUALS, Operator.IN):
        return inside
    return or_(value.is_(None), ~inside)


def selector_sql(labels: Any, selector: Selector | str | None) -> ColumnElement[bool]:
    """A condition on the JSON column ``labels`` true where ``selector`` matches."""
    if isinstance(selector, str) or selector is None:
        selector = parse_selector(selector or "")
    if not selector.requirements:
        return true()
    return and_(*(_requirement_sql(labels, r) for r in selector.requirements))
