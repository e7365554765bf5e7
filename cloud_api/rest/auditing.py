"""Recording the writes that stored nothing: refused (4xx), failed (5xx), or not through a
session (``cloud_api.services.auditing`` says what is audited and why).

A write that commits through its request's session has already recorded its row in that
transaction (``deps.get_current_token`` attached it). Every other audited request is
recorded here, in a transaction of its own, before its response starts, so a client that
has its answer can already read the row. A request refused before its token was checked
(401, 413) is recorded with no token. Dry runs are not recorded.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cloud_api.rest.context import Context
from cloud_api.services.auditing import AuditDraft, AuditRetention, draft_of, is_audited, record

log = logging.getLogger(__name__)


class AuditMiddleware:
    """Pure ASGI middleware around the app (outside the body limit, to see its 413s)."""

    def __init__(self, app: ASGIApp, *, context: Context, retention: AuditRetention) -> None:
        self.app = app
        self.context = context
        self.retention = retention

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_audited(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = scope.setdefault("state", {})
        started = False

        async def recording_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start" and not started:
                started = True
                await self._record_if_owed(scope, state, int(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        except Exception:
            if not started:
                await self._record_if_owed(scope, state, 500)
            raise

    async def _record_if_owed(self, scope: Scope, state: dict[str, Any], status: int) -> None:
        draft: AuditDraft | None = state.get("audit")
        if state.get("dry_run") or (draft is not None and draft.recorded):
            return
        if status in (404, 405) and not isinstance(scope.get("route"), APIRoute):
            return  # no such endpoint: nothing was asked of any resource
        if draft is None:
            route = scope.get("route")
            template = route.path if isinstance(route, APIRoute) else None
            draft = draft_of(scope["method"], scope["path"], template,
                             dict(scope.get("path_params") or {}))
            draft.name = draft.name or state.get("body_name")
        outcome = "done" if status < 400 else "refused" if status < 500 else "failed"
        try:
            await anyio.to_thread.run_sync(self._record, draft, status, outcome)
        except Exception:  # the write's answer must not turn into an audit failure
            log.exception("could not record the audit entry of %s %s", draft.method, draft.path)

    def _record(self, draft: AuditDraft, status: int, outcome: str) -> None:
        with self.context.store.connect() as connection:
            record(connection, draft, status=status, outcome=outcome,
                   now=self.context.now(), retention=self.retention)
            connection.commit()
        draft.recorded = True
