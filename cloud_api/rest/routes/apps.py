"""``/v1/namespaces/{ns}/apps``: apps, their selectors, and their rollout over the nodes.

An app body may reference configs, secrets, certificates and registries without a
version; the cloud pins the current one. Creating, changing or deleting an app
recomputes the desired apps of the namespace's nodes. ``GET .../apps/{name}/nodes`` lists
the matched nodes with the version they run and its status.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Response
from sqlmodel import Session

from cloud_api.rest.context import Context
from cloud_api.rest.deps import SessionDep
from cloud_api.rest.routes.resources import ReadNamespace, resource_router
from cloud_api.services.resources import pin_app
from cloud_api.services.rollout import app_rollout
from cloud_api.store.models.resources import AppCreate, AppRollout
from schemas.resources import ResourceKind


def _wire(session: Session, context: Context, namespace: str, body: Any) -> dict[str, Any]:
    return pin_app(session, namespace, body)


router = resource_router(ResourceKind.APP, AppCreate, _wire)


@router.get("/{name}/nodes", response_model=AppRollout, summary="Rollout status of an app")
def rollout(namespace: ReadNamespace, name: str, session: SessionDep) -> Response:
    """Serialized here, once: FastAPI would validate the 10,000 rows of a fleet again."""
    body = orjson.dumps(app_rollout(session, namespace, name))
    return Response(content=body, media_type="application/json")
