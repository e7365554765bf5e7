"""``GET /v1/audit``: the audit trail of REST writes, newest first, with filters.

An admin token sees every entry; any other token only the entries of its namespaces
(entries about tokens and namespaces themselves have no namespace: admins only).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query

from cloud_api.errors import Forbidden
from cloud_api.rest.deps import CurrentToken, SessionDep
from cloud_api.services.auditing import list_entries
from cloud_api.store.models import Role
from schemas.errors import ErrorCode, Rejection

router = APIRouter(prefix="/v1/audit", tags=["audit"])
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_EPOCH = 2**31 - 1  # the store's times are 32-bit integers on PostgreSQL


def parse_since(value: str) -> int:
    """ISO 8601 (``2026-12-06T15:00:00Z``, a date, or with an offset) -> epoch seconds."""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise Rejection(ErrorCode.BAD_REQUEST,
                        f"since={value!r} is not an ISO 8601 time: use e.g. 2026-12-06T15:00:00Z"
                        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0, min(int(moment.timestamp()), MAX_EPOCH))


@router.get("", summary="The audit trail of writes")
def list_all(
    token: CurrentToken,
    session: SessionDep,
    namespace: Annotated[str | None, Query(max_length=63)] = None,
    token_id: Annotated[int | None, Query(alias="token", description="a token id")] = None,
    kind: Annotated[str | None, Query(max_length=32, description="app, node, shadow, ...")] = None,
    since: Annotated[str | None, Query(max_length=64, description="ISO 8601 time")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    continue_: Annotated[str | None, Query(alias="continue", max_length=512)] = None,
) -> dict[str, Any]:
    """``{"items": [{time, tokenId, role, action, kind, namespace, name, beforeVersion,
    afterVersion, status, outcome, path, id}], "continue": str | null}``."""
    visible = None if token.role == Role.ADMIN else list(token.namespaces)
    if namespace is not None and visible is not None and namespace not in visible:
        raise Forbidden(f"this token may not access namespace {namespace!r}")
    page = list_entries(
        session, visible=visible, namespace=namespace, token=token_id, kind=kind,
        since=None if since is None else parse_since(since), limit=limit,
        continue_token=continue_)
    return {"items": page.items, "continue": page.continue_token}
