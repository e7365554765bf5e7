"""FastAPI dependencies as ``Annotated`` aliases: what a route declares to get its inputs.

Bodies are read here rather than by FastAPI's own parsing so that every body goes through
the one decoder of MQTT payloads too (``payloads.decode_payload``): 413 over the limit,
415 for bytes that are not UTF-8, 400 for anything not strict JSON, whatever the
``Content-Type``. Models are then validated from the decoded value; their errors become
400 through the app's validation handler.

Declare ``CurrentToken`` before any body in a route, so that a client without a valid
token learns only that (401), whatever it sent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ValidationError
from sqlmodel import Session

from cloud_api.mqtt.payloads import decode_payload
from cloud_api.mqtt.transport import Publisher
from cloud_api.rest.context import Context
from cloud_api.services.tokens import authenticate_api_token
from cloud_api.store.models import (
    ActivationRequest,
    ApiToken,
    ApiTokenCreate,
    BrokerAuthRequest,
    NamespaceCreate,
    NodeCreate,
)

M = TypeVar("M", bound=BaseModel)


def get_context(request: Request) -> Context:
    context: Context = request.app.state.context
    return context


ContextDep = Annotated[Context, Depends(get_context)]


def get_session(context: ContextDep) -> Iterator[Session]:
    with context.store.session() as session:
        yield session


# "function" scope: the session (and its pooled connection) is closed before the response
# is sent, so a client that has its answer never races the connection's return to the pool.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def get_publisher(context: ContextDep) -> Publisher:
    return context.publisher


PublisherDep = Annotated[Publisher, Depends(get_publisher)]

_bearer = HTTPBearer(
    auto_error=False, description="an API token: DATA_DIR/admin.token or POST /v1/tokens"
)


BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def get_current_token(session: SessionDep, credentials: BearerDep) -> ApiToken:
    return authenticate_api_token(session, credentials.credentials if credentials else None)


CurrentToken = Annotated[ApiToken, Depends(get_current_token)]


# -- bodies ----------------------------------------------------------------------------
async def raw_body(request: Request) -> bytes:
    """The body as sent (the middleware has already refused it if too large)."""
    return await request.body()


RawBody = Annotated[bytes, Depends(raw_body)]


async def json_body(body: RawBody, context: ContextDep) -> Any:
    return decode_payload(body, limits=context.settings.limits)


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
