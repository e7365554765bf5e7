"""The console's routes: page shells under ``/ui``, their data as HTML fragments under
``/ui/f``, and the static assets under ``/ui/static``.

Why split shells and fragments: a browser's navigation cannot send a bearer token, and
the console uses the API's own auth (the token, kept in the tab's ``sessionStorage``).
So a page (``/ui/ns/default/apps/web``) is a shell with no data, served to anyone; its
panels are fetched by htmx with ``Authorization: Bearer`` from ``/ui/f/...``, which
checks the token exactly as the REST API does (same dependency, same ``authorize``).

Live updates are polling with ETags: each fragment carries an ``ETag`` of its HTML; the
console sends it back as ``If-None-Match`` and an unchanged panel is a bodiless 304 that
the page does not swap. Errors the user can cause (a missing node, a namespace the token
may not see) come back as an HTML panel that says so, with their status code.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

from cloud_api.console import queries
from cloud_api.rest.deps import ContextDep, CurrentToken, SessionDep
from cloud_api.services.namespaces import list_namespaces
from cloud_api.services.nodes import get_node
from cloud_api.services.shadows import get_document
from cloud_api.services.tokens import authorize
from cloud_api.store.models.tokens import Role
from schemas.errors import Rejection

HERE = Path(__file__).parent
STATIC = "/ui/static"
POLL_SECONDS = 2
POLL_FLEET_SECONDS = 5  # panels that aggregate the whole fleet (~0.1-0.25 s at 10k nodes)

templates = Environment(loader=FileSystemLoader(HERE / "templates"),
                        autoescape=select_autoescape(["html"]), trim_blocks=True,
                        lstrip_blocks=True)


def _ago(epoch: int | None, now: float | None = None) -> str:
    if not epoch:
        return "never"
    seconds = int((now or time.time()) - epoch)
    if seconds < 60:
        return f"{max(seconds, 0)} s ago"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 86400:
        return f"{seconds // 3600} h ago"
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(epoch))


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def _date(epoch: int | None) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(epoch)) if epoch else ""


def _bytes(value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return str(value)
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


templates.filters["ago"] = _ago
templates.filters["bytes"] = _bytes
templates.filters["date"] = _date
templates.filters["pretty"] = _pretty
templates.globals["STATIC"] = STATIC
templates.globals["POLL"] = POLL_SECONDS
templates.globals["POLL_FLEET"] = POLL_FLEET_SECONDS

pages = APIRouter(prefix="/ui", include_in_schema=False)
fragments = APIRouter(prefix="/ui/f", include_in_schema=False)


# -- shells ----------------------------------------------------------------------------
def _shell(title: str, panels: list[dict[str, Any]], *, namespace: str | None = None,
           crumbs: list[tuple[str, str]] | None = None) -> HTMLResponse:
    html = templates.get_template("shell.html").render(
        title=title, panels=panels, namespace=namespace, crumbs=crumbs or [])
    return HTMLResponse(html)


def _panel(url: str, *, poll: bool = True, wide: bool = False, kind: str = "fragment",
           title: str = "") -> dict[str, Any]:
    return {"url": url, "poll": poll, "wide": wide, "kind": kind, "title": title}


@pages.get("")
def home() -> RedirectResponse:
    return RedirectResponse("/ui/")


@pages.get("/")
def namespaces_page() -> HTMLResponse:
    return _shell("Namespaces", [_panel("/ui/f/namespaces", poll=False, wide=True)])


@pages.get("/login")
def login_page() -> HTMLResponse:
    return HTMLResponse(templates.get_template("login.html").render(title="Sign in"))


@pages.get("/ns/{namespace}")
def overview_page(namespace: str) -> HTMLResponse:
    base = f"/ui/f/ns/{namespace}"
    return _shell(f"{namespace}: fleet", [
        _panel(f"{base}/overview", wide=True),
        _panel(f"{base}/nodes"),
        _panel(f"/v1/namespaces/{namespace}/events?limit=20", kind="events",
               title="Recent events"),
    ], namespace=namespace)


@pages.get("/ns/{namespace}/nodes/{node}")
def node_page(namespace: str, node: str) -> HTMLResponse:
    base = f"/ui/f/ns/{namespace}/nodes/{node}"
    return _shell(f"node {node}", [
        _panel(base, wide=True),
        _panel(f"{base}/logs", poll=False, wide=True),
    ], namespace=namespace, crumbs=[("nodes", f"/ui/ns/{namespace}"), (node, "")])


@pages.get("/ns/{namespace}/apps/{app}")
def app_page(namespace: str, app: str) -> HTMLResponse:
    return _shell(f"app {app}", [_panel(f"/ui/f/ns/{namespace}/apps/{app}", wide=True)],
                  namespace=namespace, crumbs=[("apps", f"/ui/ns/{namespace}"), (app, "")])


@pages.get("/ns/{namespace}/configs")
def configs_page(namespace: str) -> HTMLResponse:
    return _shell(f"{namespace}: configs and secrets",
                  [_panel(f"/ui/f/ns/{namespace}/configs", wide=True)],
                  namespace=namespace, crumbs=[("configs and secrets", "")])


def _object(document: dict[str, Any], key: str) -> dict[str, Any]:
    """``document[key]`` if it is an object, else empty (a node reports what it likes)."""
    value = document.get(key)
    return value if isinstance(value, dict) else {}


# -- fragments -------------------------------------------------------------------------
def _fragment(request: Request, template: str, build: Callable[[], dict[str, Any]]) -> Response:
    """``template`` rendered with what ``build`` returns; 304 if the client has it; a
    rejection (404, 403...) as an error panel with its status."""
    status = 200
    self_url = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    try:
        html = templates.get_template(template).render(now=time.time(), self_url=self_url, **build())
    except Rejection as exc:
        status = int(exc.code)
        html = templates.get_template("error.html").render(code=status, message=exc.message,
                                                           self_url=self_url)
    etag = '"' + hashlib.blake2b(html.encode(), digest_size=12).hexdigest() + '"'
    headers = {"ETag": etag, "Cache-Control": "no-store"}
    if status == 200 and request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return HTMLResponse(html, status_code=status, headers=headers)


@fragments.get("/namespaces")
def namespaces_fragment(request: Request, token: CurrentToken, session: SessionDep) -> Response:
    def build() -> dict[str, Any]:
        only = None if token.role == Role.ADMIN else token.namespaces
        return {"namespaces": [ns.name for ns in list_namespaces(session, only=only)],
                "role": token.role}
    return _fragment(request, "namespaces.html", build)


@fragments.get("/ns/{namespace}/overview")
def overview_fragment(request: Request, token: CurrentToken, namespace: str,
                      session: SessionDep) -> Response:
    def build() -> dict[str, Any]:
        authorize(token, namespace=namespace)
        return {"namespace": namespace, "view": queries.overview(session, namespace)}
    return _fragment(request, "overview.html", build)


@fragments.get("/ns/{namespace}/nodes")
def nodes_fragment(request: Request, token: CurrentToken, namespace: str, session: SessionDep,
                   after: str = "", state: str = "") -> Response:
    def build() -> dict[str, Any]:
        authorize(token, namespace=namespace)
        page = queries.node_page(session, namespace, after=after, state=state)
        return {"namespace": namespace, "page": page, "state": state}
    return _fragment(request, "nodes.html", build)


@fragments.get("/ns/{namespace}/nodes/{node}")
def node_fragment(request: Request, token: CurrentToken, namespace: str, node: str,
                  session: SessionDep) -> Response:
    def build() -> dict[str, Any]:
        authorize(token, namespace=namespace)
        row = get_node(session, namespace, node)
        document = get_document(session, namespace, node)
        reported, desired = document.reported, document.desired
        stats, wanted, running = (_object(reported, "appstats"), _object(desired, "apps"),
                                  _object(reported, "apps"))
        apps = [{"name": name, "desired": wanted.get(name), "reported": running.get(name),
                 **_object(stats, name)}
                for name in sorted(set(wanted) | set(running) | set(stats))]
        return {"namespace": namespace, "node": row, "document": document, "apps": apps,
                "facts": reported.get("node") or {}, "stats": reported.get("nodestats") or {}}
    return _fragment(request, "node.html", build)


@fragments.get("/ns/{namespace}/nodes/{node}/logs")
def logs_fragment(request: Request, token: CurrentToken, namespace: str, node: str,
                  session: SessionDep) -> Response:
    def build() -> dict[str, Any]:
        authorize(token, namespace=namespace)
        get_node(session, namespace, node)
        desired = get_document(session, namespace, node).desired.get("apps")
        return {"namespace": namespace, "node": node,
                "apps": sorted(desired) if isinstance(desired, dict) else []}
    return _fragment(request, "logs.html", build)


@fragments.get("/ns/{namespace}/apps/{app}")
def app_fragment(request: Request, token: CurrentToken, namespace: str, app: str,
                 session: SessionDep, page: int = 1) -> Response:
    def build() -> dict[str, Any]:
        authorize(token, namespace=namespace)
        return {"namespace": namespace, "view": queries.app_view(session, namespace, app, page=page),
                "url": request.url.path}
    return _fragment(request, "app.html", build)


@fragments.get("/ns/{namespace}/configs")
def configs_fragment(request: Request, token: CurrentToken, namespace: str,
                     session: SessionDep, context: ContextDep) -> Response:
    def build() -> dict[str, Any]:
        authorize(token, namespace=namespace)
        return {"namespace": namespace, "kinds": queries.resources_of(session, namespace)}
    return _fragment(request, "configs.html", build)


def install_console(app: FastAPI) -> None:
    """Serve the console at ``/ui`` (and send ``/`` there)."""
    app.mount(STATIC, StaticFiles(directory=HERE / "static"), name="console-static")
    app.include_router(pages)
    app.include_router(fragments)

    async def root() -> RedirectResponse:
        return RedirectResponse("/ui/")

    app.add_api_route("/", root, include_in_schema=False)
