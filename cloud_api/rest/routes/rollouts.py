"""Rollouts, resource versions and shadow history over REST.

- ``GET .../apps/{name}/rollout``: phase, versions, wave, each matched node's outcome;
  ``POST .../apps/{name}/rollout/pause|resume|undo`` (an editor's token);
- ``GET .../{kind}s/{name}/versions`` and ``.../{kind}s/{name}/diff[?from=N][&to=M]`` for apps,
  configs, secrets, certificates and registries (public views only: no secret value);
- ``GET .../nodes/{node}/shadow/history[?limit=N][&at=EPOCH]``: the node's recent
  revisions, newest first, with who wrote each.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from cloud_api.errors import NotFound
from cloud_api.rest.deps import ContextDep, CurrentToken, SessionDep
from cloud_api.rest.routes.resources import ReadNamespace, WriteNamespace
from cloud_api.services import rollout_control
from cloud_api.services.shadows import get_document
from cloud_api.services.tokens import authorize
from cloud_api.services.versions import diff_versions, list_versions
from cloud_api.store.shadow_history import node_history
from schemas.resources import ResourceKind

router = APIRouter(prefix="/v1/namespaces/{namespace}", tags=["rollouts"])
_KINDS = {f"{kind.value}s": kind for kind in ResourceKind}


def _kind(plural: str) -> ResourceKind:
    kind = _KINDS.get(plural)
    if kind is None:
        raise NotFound(f"no resource kind {plural!r}: use one of {', '.join(sorted(_KINDS))}")
    return kind


@router.get("/apps/{name}/rollout", summary="Rollout of an app: phase, waves, node outcomes")
def status(namespace: ReadNamespace, name: str, session: SessionDep) -> dict[str, Any]:
    return rollout_control.rollout_status(session, namespace, name)


@router.post("/apps/{name}/rollout/pause", summary="Pause an app's rollout")
def pause(namespace: WriteNamespace, name: str, context: ContextDep) -> dict[str, Any]:
    return rollout_control.pause(context.store, namespace, name, now=context.now())


@router.post("/apps/{name}/rollout/resume", summary="Resume a paused rollout")
def resume(namespace: WriteNamespace, name: str, context: ContextDep) -> dict[str, Any]:
    return rollout_control.resume(context.store, namespace, name, now=context.now())


@router.post("/apps/{name}/rollout/undo", summary="Roll every touched node back")
def undo(namespace: WriteNamespace, name: str, context: ContextDep) -> dict[str, Any]:
    done = rollout_control.undo(context.store, namespace, name, now=context.now())
    context.matching_owed()
    return done


@router.get("/{plural}/{name}/versions", summary="Every version of a resource")
def versions(namespace: ReadNamespace, plural: str, name: str, session: SessionDep) -> dict[str, Any]:
    return list_versions(session, namespace, _kind(plural), name)


@router.get("/{plural}/{name}/diff", summary="What changed between two versions")
def diff(
    namespace: ReadNamespace, plural: str, name: str, session: SessionDep,
    old: Annotated[str | None, Query(alias="from")] = None,
    new: Annotated[str | None, Query(alias="to")] = None,
) -> dict[str, Any]:
    """``to`` defaults to the current version, ``from`` to the one before ``to``."""
    return diff_versions(session, namespace, _kind(plural), name, old=old, new=new)


@router.get("/nodes/{node}/shadow/history", summary="A node's recent shadow revisions")
def shadow_history(
    token: CurrentToken, namespace: str, node: str, session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100, at: Annotated[int | None, Query()] = None,
) -> dict[str, Any]:
    authorize(token, namespace=namespace)
    get_document(session, namespace, node)  # 404 for a node that does not exist
    items = node_history(session.connection(), namespace, node, limit=limit, at=at)
    return {"node": node, "items": list(items)}
