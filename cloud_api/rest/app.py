"""The FastAPI application: routers, the body limit, and one error shape for everything.

Every error leaves as ``{"code", "message"}`` with that HTTP status (DESIGN §6): the
cloud's own errors and ``schemas`` rejections carry their code; FastAPI's request
validation errors are 400 (not 422: a malformed request is a bad request, as on MQTT);
unknown routes and methods keep their 404/405; anything unexpected is a logged 500 that
reveals nothing. Retryable errors add ``Retry-After``; 401 adds ``WWW-Authenticate``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from cloud_api.agent_wheels import MAX_WHEEL_BYTES
from cloud_api.console.pages import install_console
from cloud_api.errors import Retryable
from cloud_api.packaging import ServedWheel
from cloud_api.rest.auditing import AuditMiddleware
from cloud_api.rest.context import Context
from cloud_api.rest.deps import audit_retention
from cloud_api.rest.middleware import BodyLimitMiddleware
from cloud_api.rest.openapi import install_openapi
from cloud_api.rest.querying import refuse_unknown_query
from cloud_api.rest.routes import (
    activation,
    agent,
    apps,
    audit,
    broker,
    certificates,
    configs,
    events,
    functions,
    health,
    init,
    logs,
    namespaces,
    nodes,
    registries,
    rollouts,
    secrets,
    shadows,
    tokens,
)
from cloud_api.rest.timing import RequestTimingMiddleware
from cloud_api.services.secrets_crypto import SecretBox
from schemas.errors import ErrorCode, Rejection

log = logging.getLogger(__name__)

MAX_REPORTED_ERRORS = 5


def error_response(
    code: int, message: str, *, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=code, headers=headers)


def describe_validation_errors(errors: Sequence[Any]) -> str:
    """``body.labels.x: Input should be a valid string; query.mode: ...`` (the first few)."""
    parts = []
    for error in errors[:MAX_REPORTED_ERRORS]:
        where = ".".join(str(part) for part in error.get("loc", ()))
        message = str(error.get("msg", "invalid"))
        parts.append(f"{where}: {message}" if where else message)
    more = len(errors) - MAX_REPORTED_ERRORS
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


async def _on_rejection(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Rejection)
    headers: dict[str, str] = {}
    if isinstance(exc, Retryable):
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    if exc.code == ErrorCode.UNAUTHORIZED:
        headers["WWW-Authenticate"] = "Bearer"
    if exc.code >= ErrorCode.INTERNAL and exc.code != ErrorCode.UNAVAILABLE:  # 503: a fact
        log.error("%s %s failed: %s", request.method, request.url.path, exc.message)
    return error_response(int(exc.code), exc.message, headers=headers)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(ErrorCode.BAD_REQUEST, describe_validation_errors(exc.errors()))


async def _on_http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return error_response(exc.status_code, str(exc.detail), headers=exc.headers)


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return error_response(ErrorCode.INTERNAL, "internal error; see the cloud's log")


def create_app(context: Context) -> FastAPI:
    """The REST API over ``context``'s store, publishing through ``context.publisher``."""
    app = FastAPI(
        title="Tether cloud API",
        summary="Nodes, their shadow documents, activation and broker authentication.",
        version="0.1.0",
        docs_url=None,  # served from local assets by install_openapi
        redoc_url=None,
        dependencies=[Depends(refuse_unknown_query)],
    )
    app.state.context = context
    app.state.secret_box = SecretBox.from_settings(context.settings)
    app.state.wheel = ServedWheel(context.settings)
    app.add_middleware(BodyLimitMiddleware, max_bytes=context.settings.limits.max_payload_bytes,
                       larger={agent.UPLOAD_PATH: MAX_WHEEL_BYTES})
    app.add_middleware(RequestTimingMiddleware, metrics=context.metrics)
    app.add_middleware(AuditMiddleware, context=context, retention=audit_retention(context))
    app.add_exception_handler(Rejection, _on_rejection)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_exception_handler(Exception, _on_unexpected)
    for module in (health, namespaces, nodes, shadows, activation, init, broker, tokens):
        app.include_router(module.router)
    for module in (apps, configs, secrets, certificates, registries):
        app.include_router(module.router)
    app.include_router(nodes.bulk_router)
    app.include_router(functions.router)
    app.include_router(logs.router)
    app.include_router(events.router)
    app.include_router(audit.router)
    app.include_router(agent.router)
    app.include_router(rollouts.router)
    install_openapi(app)
    install_console(app)
    return app
