"""``GET /v1/init/install.sh`` and ``GET /v1/init/manifest.yaml``: what an install command fetches.

The one-time token in the query is the credential (as for ``POST /v1/activate``, and rate
limited the same way); fetching does not spend it, activating does. The answers hold the
token and never a private key.
"""

from __future__ import annotations

from typing import Annotated

import yaml
from fastapi import APIRouter, Depends, Query
from fastapi.responses import PlainTextResponse

from cloud_api.deps import ContextDep, SessionDep
from cloud_api.routes.activation import limit_activations
from cloud_api.services.activation import pending_token
from cloud_api.services.install import render_install_script, render_manifest

router = APIRouter(prefix="/v1/init", tags=["activation"], dependencies=[Depends(limit_activations)])

TokenQuery = Annotated[str, Query(max_length=256, description="the one-time activation token")]
NO_STORE = {"Cache-Control": "no-store"}


@router.get("/install.sh", response_class=PlainTextResponse)
def install_script(token: TokenQuery, session: SessionDep, context: ContextDep) -> PlainTextResponse:
    """The native install script for the token's node."""
    row = pending_token(session, token, now=context.now())
    script = render_install_script(
        public_url=context.settings.public_url, namespace=row.namespace, node=row.node, token=token
    )
    return PlainTextResponse(script, media_type="text/x-shellscript", headers=NO_STORE)


@router.get("/manifest.yaml", response_class=PlainTextResponse)
def manifest(token: TokenQuery, session: SessionDep, context: ContextDep) -> PlainTextResponse:
    """The Kubernetes manifest for the token's node (``kubectl apply -f``)."""
    row = pending_token(session, token, now=context.now())
    objects = render_manifest(
        public_url=context.settings.public_url, namespace=row.namespace, node=row.node,
        token=token, image=context.settings.edge_image,
    )
    text = yaml.safe_dump_all(objects, sort_keys=False)
    return PlainTextResponse(text, media_type="application/yaml", headers=NO_STORE)
