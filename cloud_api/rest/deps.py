"""FastAPI dependencies as ``Annotated`` aliases: what a route declares to get its inputs.

Bodies are read here rather than by FastAPI's own parsing so that every body goes through
the one decoder of MQTT payloads too (``payloads.decode_payload``): 413 over the limit,
415 for bytes that are not UTF-8, 400 for anything not strict JSON, whatever the
``Content-Type``. Models are then validated from the decoded value; their errors become
400 through the app's validation handler.

Declare ``CurrentToken`` before any body in a route, so that a client without a valid
token learns only that (401), whatever it sent.

Two things every write gets here, without its route knowing:

- The audit trail (``cloud_api.services.auditing``): once the token is known, a write's
  ``AuditDraft`` is attached to the request's session, so its row is committed with the
  write; ``rest.auditing.AuditMiddleware`` records the writes that stored nothing.
- ``dryRun=All`` (or ``true``) on any write: the session's commits only flush, and the
  whole transaction is rolled back at the end, so every check runs (names, references,
  conflicts, selectors) and nothing is stored, published or announced.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ValidationError
from sqlmodel import Session

from cloud_api.mqtt.payloads import decode_payload
from cloud_api.mqtt.transport import NullPublisher, Publisher
from cloud_api.rest.context import Context
from cloud_api.rest.querying import takes_dry_run
from cloud_api.services.auditing import (
    AuditDraft,
    AuditRetention,
    attach,
    draft_of,
    is_audited,
    version_of,
)
from cloud_api.services.tokens import authenticate_api_token
from cloud_api.store.models import (
    ActivationRequest,
    ApiToken,
    ApiTokenCreate,
    BrokerAuthRequest,
    NamespaceCreate,
    NodeCreate,
)
from schemas.errors import ErrorCode, Rejection

M = TypeVar("M", bound=BaseModel)


def get_context(request: Request) -> Context:
    context: Context = request.app.state.context
    return context


ContextDep = Annotated[Context, Depends(get_context)]


DRY_RUN_VALUES = frozenset({"All", "true"})


class DryRunSession(Session):
    """A session whose commits only flush: the request's writes are checked, never kept."""

    def commit(self) -> None:
        self.flush()


def is_dry_run(request: Request) -> bool:
    """Whether a write asks ``dryRun``; 400 for a value that is not ``All`` or ``true``."""
    value = request.query_params.get("dryRun")
    if value is None or not takes_dry_run(request.method, request.url.path):
        return False
    if value not in DRY_RUN_VALUES:
        raise Rejection(ErrorCode.BAD_REQUEST, f"dryRun={value!r}: use dryRun=All")
    return True


def get_session(context: ContextDep, request: Request) -> Iterator[Session]:
    if is_dry_run(request):
        request.state.dry_run = True
        # the store's error wrapping, on its engine
        with context.store.session() as plain, DryRunSession(
                plain.get_bind(), expire_on_commit=False) as session:
            try:
                yield session
            finally:
                session.rollback()
        return
    with context.store.session() as session:
        yield session


# "function" scope: the session (and its pooled connection) is closed before the response
# is sent, so a client that has its answer never races the connection's return to the pool.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def get_publisher(context: ContextDep, request: Request) -> Publisher:
    return NullPublisher() if is_dry_run(request) else context.publisher


PublisherDep = Annotated[Publisher, Depends(get_publisher)]

_bearer = HTTPBearer(
    auto_error=False, description="an API token: DATA_DIR/admin.token or POST /v1/tokens"
)


BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def get_current_token(
    session: SessionDep, credentials: BearerDep, request: Request, context: ContextDep
) -> ApiToken:
    token = authenticate_api_token(session, credentials.credentials if credentials else None)
    if is_audited(request.method, request.url.path) and not is_dry_run(request):
        _audit_this_request(session, token, request, context)
    return token


def _audit_this_request(session: Session, token: ApiToken, request: Request,
                        context: Context) -> None:
    draft: AuditDraft | None = getattr(request.state, "audit", None)
    if draft is None:
        route = request.scope.get("route")
        template = route.path if isinstance(route, APIRoute) else None
        draft = draft_of(request.method, request.url.path, template, dict(request.path_params))
        if isinstance(route, APIRoute) and route.status_code is not None:
            draft.success_status = int(route.status_code)
        request.state.audit = draft
    if draft.name is None:
        draft.name = getattr(request.state, "body_name", None)
    draft.token_id, draft.role = token.id, str(token.role)
    draft.before_version = version_of(session.connection(), draft.kind, draft.namespace, draft.name)
    attach(session, draft, now=context.clock, retention=audit_retention(context))


def audit_retention(context: Context) -> AuditRetention:
    settings = context.settings
    return AuditRetention(max_rows=settings.audit_max_rows,
                          max_age_days=settings.audit_max_age_days)


CurrentToken = Annotated[ApiToken, Depends(get_current_token)]


# -- bodies ----------------------------------------------------------------------------
async def raw_body(request: Request) -> bytes:
    """The body as sent (the middleware has already refused it if too large)."""
    return await request.body()


RawBody = Annotated[bytes, Depends(raw_body)]


async def json_body(body: RawBody, context: ContextDep, request: Request) -> Any:
    decoded = decode_payload(body, limits=context.settings.limits)
    if isinstance(decoded, dict) and isinstance(decoded.get("name"), str):
        request.state.body_name = decoded["name"][:253]  # what a create names, for the audit
        draft: AuditDraft | None = getattr(request.state, "audit", None)
        if draft is not None and draft.name is None:
            draft.name = request.state.body_name
    return decoded


JsonBody = Annotated[Any, Depends(json_body)]


def body_of(model: type[M]) -> Callable[[Any], Awaitable[M]]:
    """A dependency that validates the JSON body as ``model`` (errors -> 400)."""

    async def parse(body: JsonBody) -> M:
        try:
            return model.model_validate(body)
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_input=False, include_context=False)
            raise RequestValidationError(
                [{**error, "loc": ("body", *error["loc"])} for error in errors]
            ) from exc

    return parse


NamespaceCreateBody = Annotated[NamespaceCreate, Depends(body_of(NamespaceCreate))]
NodeCreateBody = Annotated[NodeCreate, Depends(body_of(NodeCreate))]
ActivationBody = Annotated[ActivationRequest, Depends(body_of(ActivationRequest))]
BrokerAuthBody = Annotated[BrokerAuthRequest, Depends(body_of(BrokerAuthRequest))]
ApiTokenCreateBody = Annotated[ApiTokenCreate, Depends(body_of(ApiTokenCreate))]
