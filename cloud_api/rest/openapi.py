"""The OpenAPI document and ``/docs``: accurate errors and bodies, served without a CDN.

Why it exists: FastAPI's generated document misses what this API does differently.
Bodies are read by dependencies (``deps.body_of``, so that every body goes through the
one payload decoder), so FastAPI sees no request body; validation errors are 400, not
422; and every error is ``{"code", "message"}`` (DESIGN §6). ``install_openapi`` replaces
``app.openapi`` with a builder that, for every route in ``app.routes``:

- adds the request body the route's ``body_of(Model)`` dependency validates (found by
  walking the dependency tree), or the shadow patch shape for ``RawBody`` routes;
- documents the error responses that can happen there: 400 with any input, 401/403 with
  a bearer token, 404 under a path parameter, 409 on writes, 413/415 with a body, 429
  where a rate limit or compare-and-swap applies, 502/503/504 on a function invocation,
  500 always; replaces FastAPI's 422;
- describes the tags; shadow documents get a schema.

``/docs`` is Swagger UI 5 (it reads OpenAPI 3.1, which this document is; the 4.x of the
``swagger-ui-bundle`` package rendered it blank), vendored from npm's ``swagger-ui-dist``
into ``rest/swagger_ui/`` and mounted at ``/docs/assets``, so the docs work on an offline
edge site or an air-gapped cloud.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from cloud_api.rest.querying import CONTINUE_HEADER, takes_dry_run

DOCS_ASSETS = "/docs/assets"
SWAGGER_UI = Path(__file__).with_name("swagger_ui")
DRY_RUN_PARAMETER = {
    "name": "dryRun", "in": "query", "required": False,
    "description": "All: check the write as if it were made, store and publish nothing",
    "schema": {"type": "string", "enum": ["All", "true"]},
}
ERROR_REF = {"$ref": "#/components/schemas/Error"}
ERROR_TEXT = {
    400: "Bad request: malformed JSON, a field that fails validation, a bad name",
    401: "Missing, unknown or expired token",
    403: "The token lacks the role or the namespace",
    404: "No such namespace, node or resource",
    409: "Conflict: the name is taken, the version is not current, or it is in use",
    413: "The body is larger than the configured limit",
    415: "The body is not UTF-8",
    429: "Too many requests: retry after Retry-After seconds",
    500: "Internal error (details in the cloud's log)",
    502: "The node's function failed (its error as the body)",
    503: "The node is offline (since when, in the message): retry after Retry-After seconds",
    504: "The node did not answer within the timeout",
}
TAGS = [
    {"name": "namespaces", "description": "Namespaces: the unit of tenancy of nodes and resources."},
    {"name": "nodes", "description": "Edge nodes: labels, mode, liveness; deleting revokes them."},
    {"name": "shadows", "description": "A node's desired/reported shadow document (DESIGN §5)."},
    {"name": "apps", "description": "Apps matched to nodes by label selector, and their rollout."},
    {"name": "configs", "description": "Key/value data apps mount."},
    {"name": "secrets", "description": "Like configs, sealed at rest; values are never returned."},
    {"name": "certificates", "description": "PEM certificate/key pairs, uploaded or generated."},
    {"name": "registries", "description": "Image registries; passwords are sealed."},
    {"name": "activation", "description": "One-time tokens exchanged for a node's credentials."},
    {"name": "functions", "description": "Invoke a function app on a node."},
    {"name": "tokens", "description": "Scoped API tokens."},
    {"name": "broker", "description": "For an external MQTT broker: the authentication hook and the CRL."},
    {"name": "health", "description": "Liveness and Prometheus metrics."},
]


class Error(BaseModel):
    """Every error response: an HTTP-like code (DESIGN §6) and a message to act on."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"code": 404, "message": "node default/x not found"}]})

    code: int = Field(ge=400, le=599)
    message: str


class ShadowDesiredPatch(BaseModel):
    """``PATCH .../shadow``: a JSON merge patch of ``desired``; ``version`` to compare-and-swap."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"state": {"desired": {"properties": {"fan": "on"}}}, "version": 3}]})

    state: dict[str, Any]
    version: int | None = None
    clientToken: str | None = None  # the wire name


class ShadowDocument(BaseModel):
    """The shadow document (DESIGN §5)."""

    state: dict[str, Any]
    metadata: dict[str, Any]
    version: int
    timestamp: int


def install_openapi(app: FastAPI) -> None:
    """Serve ``/docs`` from local assets and build ``/openapi.json`` with ``build_openapi``.

    Create the app with ``docs_url=None, redoc_url=None`` so FastAPI's CDN pages are off."""
    app.mount(DOCS_ASSETS, StaticFiles(directory=SWAGGER_UI), name="docs-assets")

    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=root + (app.openapi_url or "/openapi.json"),
            title=f"{app.title} - docs",
            swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon-32x32.png",
            oauth2_redirect_url=None,
        )

    app.add_route("/docs", docs, include_in_schema=False)
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]


def build_openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    spec = get_openapi(title=app.title, version=app.version, summary=app.summary,
                       description=app.description, routes=app.routes, tags=TAGS)
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = Error.model_json_schema()
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        for method in sorted(context.methods or ()):
            operation = spec["paths"][context.path_format][method.lower()]
            _document(operation, route, method=method, path=str(context.path_format), schemas=schemas)
    app.openapi_schema = spec
    return spec


def _document(operation: dict[str, Any], route: APIRoute, *, method: str, path: str,
              schemas: dict[str, Any]) -> None:
    calls = set(_calls(route.dependant))
    names = {getattr(call, "__name__", "") for call in calls}
    model = next((found for call in calls if (found := _body_model(call)) is not None), None)
    if model is None and "raw_body" in names and path.endswith("/shadow"):
        model = ShadowDesiredPatch
    has_body = model is not None or "raw_body" in names
    if model is not None and "requestBody" not in operation:
        operation["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": _component(model, schemas)}}}
    if path.endswith("/shadow"):
        ok = operation["responses"].get("200", {})
        ok["content"] = {"application/json": {"schema": _component(ShadowDocument, schemas)}}
    responses = operation["responses"]
    responses.pop("422", None)
    codes = {500}
    if has_body or "{" in path or route.dependant.query_params or path.startswith("/v1"):
        codes.add(400)  # under /v1, an unknown query parameter is refused (rest.querying)
    if "get_current_token" in names:
        codes |= {401, 403}
    if has_body and "activation" in route.tags:  # the body carries the credential
        codes.add(401)
    if "{" in path:
        codes.add(404)
    if method in ("POST", "PUT", "PATCH", "DELETE") and "{namespace}" in path:
        codes.add(409)
    if has_body:
        codes |= {413, 415}
    if "limit_activations" in names or (has_body and path.endswith("/shadow")) or ":invoke" in path:
        codes.add(429)
    if ":invoke" in path:
        codes |= {502, 503, 504}
    for code in sorted(codes):
        responses.setdefault(str(code), {"description": ERROR_TEXT[code],
                                         "content": {"application/json": {"schema": ERROR_REF}}})
    if takes_dry_run(method, path):
        operation.setdefault("parameters", []).append(DRY_RUN_PARAMETER)
    if "page_params" in names:
        ok = responses.get("200", {})
        ok.setdefault("headers", {})[CONTINUE_HEADER] = {
            "description": "the token of the next page (send it as ?continue=); "
                           "absent on the last page", "schema": {"type": "string"}}


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for dependency in dependant.dependencies:
        if dependency.call is not None:
            yield dependency.call
        yield from _calls(dependency)


def _body_model(call: Callable[..., Any]) -> type[BaseModel] | None:
    """The model a ``deps.body_of(Model)`` parser (or a wrapper of one) validates."""
    code = getattr(call, "__code__", None)
    for name, cell in zip(code.co_freevars if code else (), getattr(call, "__closure__", None) or (),
                          strict=False):
        value = cell.cell_contents
        if name == "model" and isinstance(value, type) and issubclass(value, BaseModel):
            return value
        if callable(value) and name == "parse":
            return _body_model(value)
    return None


def _component(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, str]:
    """Register ``model`` (as ``Name-Request`` for bodies, to keep FastAPI's names apart)."""
    suffix = "" if model in (ShadowDocument,) else "-Request"
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}" + suffix,
                                     by_alias=True, mode="validation")
    for name, definition in schema.pop("$defs", {}).items():
        schemas.setdefault(name + suffix, definition)
    schemas.setdefault(model.__name__ + suffix, schema)
    return {"$ref": f"#/components/schemas/{model.__name__}{suffix}"}
