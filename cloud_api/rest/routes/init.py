"""``GET /v1/init/install.sh`` and ``GET /v1/init/manifest.yaml``: what an install command fetches.

The one-time token in the query is the credential (as for ``POST /v1/activate``, and rate
limited the same way); fetching does not spend it, activating does. The answers hold the
token and never a private key.

``GET /v1/init/tether-VERSION-py3-none-any.whl`` is the wheel the script installs by
default (``cloud_api.packaging``): code and no secret, so it needs no token. So are the
wheels of its dependencies, once an operator built the wheelhouse
(``tether cloud wheelhouse build``): ``GET /v1/init/wheelhouse/`` lists them as links
(what ``pip --find-links`` reads), ``GET /v1/init/wheelhouse/NAME`` serves one, and the
script then installs with ``--no-index`` against that page.
"""

from __future__ import annotations

from typing import Annotated

import yaml
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse

from cloud_api.errors import NotFound
from cloud_api.packaging import ServedWheel, ServedWheelhouse
from cloud_api.rest.deps import ContextDep, SessionDep
from cloud_api.rest.openapi import ERROR_REF
from cloud_api.rest.routes.activation import limit_activations
from cloud_api.services.activation import pending_token
from cloud_api.services.install import render_install_script, render_manifest

router = APIRouter(prefix="/v1/init", tags=["activation"])
Limited = [Depends(limit_activations)]

TokenQuery = Annotated[str, Query(max_length=256, description="the one-time activation token")]
NO_STORE = {"Cache-Control": "no-store"}


def served_wheel(request: Request) -> ServedWheel:
    wheel: ServedWheel = request.app.state.wheel
    return wheel


WheelDep = Annotated[ServedWheel, Depends(served_wheel)]


@router.get("/install.sh", response_class=PlainTextResponse, dependencies=Limited)
def install_script(
    token: TokenQuery, session: SessionDep, context: ContextDep, wheel: WheelDep
) -> PlainTextResponse:
    """The native install script for the token's node; it installs the served wheel."""
    row = pending_token(session, token, now=context.now())
    public_url = context.settings.public_url
    wheelhouse = ServedWheelhouse(context.settings)
    script = render_install_script(
        public_url=public_url, namespace=row.namespace, node=row.node, token=token,
        package=f"{public_url}/v1/init/{wheel.name}",
        find_links=f"{public_url}/v1/init/wheelhouse/" if wheelhouse.names() else None,
    )
    return PlainTextResponse(script, media_type="text/x-shellscript", headers=NO_STORE)


@router.get("/manifest.yaml", response_class=PlainTextResponse, dependencies=Limited)
def manifest(token: TokenQuery, session: SessionDep, context: ContextDep) -> PlainTextResponse:
    """The Kubernetes manifest for the token's node (``kubectl apply -f``)."""
    row = pending_token(session, token, now=context.now())
    objects = render_manifest(
        public_url=context.settings.public_url, namespace=row.namespace, node=row.node,
        token=token, image=context.settings.edge_image,
    )
    text = yaml.safe_dump_all(objects, sort_keys=False)
    return PlainTextResponse(text, media_type="application/yaml", headers=NO_STORE)


@router.get("/wheelhouse/", response_class=HTMLResponse, responses={404: {
    "description": "No wheelhouse was built", "content": {"application/json": {"schema": ERROR_REF}}}})
def wheelhouse_page(context: ContextDep) -> HTMLResponse:
    """Links to the wheels of Tether's dependencies (``pip --find-links``); 404 until
    ``tether cloud wheelhouse build`` has run."""
    wheelhouse = ServedWheelhouse(context.settings)
    if not wheelhouse.names():
        raise NotFound("no wheelhouse here: build it with `tether cloud wheelhouse build`")
    return HTMLResponse(wheelhouse.page())


@router.get(
    "/wheelhouse/{filename}",
    response_class=FileResponse,
    responses={200: {"description": "a wheel", "content": {"application/octet-stream": {}}}},
)
def wheelhouse_file(filename: str, context: ContextDep) -> FileResponse:
    """One wheel of the wheelhouse (404 for any name it does not list)."""
    path = ServedWheelhouse(context.settings).path(filename)
    if path is None:
        raise NotFound(f"no wheel {filename!r} in the wheelhouse")
    return FileResponse(path, media_type="application/octet-stream", filename=filename)


@router.get(
    "/{filename}",
    response_class=FileResponse,
    responses={200: {"description": "the wheel", "content": {"application/octet-stream": {}}}},
)
def wheel_file(filename: str, wheel: WheelDep) -> FileResponse:
    """The wheel ``install.sh`` installs: the cloud's own version (404 for any other name)."""
    if filename != wheel.name:
        raise NotFound(f"no file {filename!r} here; install.sh installs {wheel.name}")
    return FileResponse(wheel.path(), media_type="application/octet-stream", filename=wheel.name)
