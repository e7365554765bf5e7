"""``/v1/agent/wheels`` and ``POST .../agent/upgrade``: the agent versions nodes run.

An admin uploads agent wheels (``PUT /v1/agent/wheels``, the wheel as the body); nodes
fetch them without a token (``GET /v1/agent/wheels/FILE``: code, no secret; the node
checks the sha256 that desired names). ``POST /v1/namespaces/{ns}/agent/upgrade`` sets
``desired.sysapps.tether`` of the nodes named and/or matching a selector
(``services.agent_upgrade``); ``GET`` on the same path says what each node reports.
With ``rollout`` (an app's ``spec.rollout`` shape) the upgrade goes out in waves with
health gates instead (``services.agent_rollout``); ``GET .../agent/rollout`` shows it and
``POST .../agent/rollout/{pause,resume,undo}`` acts on it (``services.rollout_control``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

from cloud_api.agent_wheels import WHEELS_PATH, AgentWheels
from cloud_api.errors import NotFound
from cloud_api.rest.context import Context
from cloud_api.rest.deps import ContextDep, CurrentToken, PublisherDep, RawBody
from cloud_api.services import agent_rollout, rollout_control
from cloud_api.services.agent_upgrade import (
    agent_outcomes,
    select_nodes,
    set_agent_target,
    target_for,
)
from cloud_api.services.tokens import authorize
from schemas.errors import ErrorCode, Rejection
from schemas.resources import RolloutStrategy
from schemas.sysapps import DEFAULT_DEADLINE_SECONDS, MAX_DEADLINE_SECONDS

router = APIRouter(tags=["agent"])
UPLOAD_PATH = WHEELS_PATH


def wheels_of(context: Context) -> AgentWheels:
    return AgentWheels(context.settings.data_dir / "wheels" / "agents")


class UpgradeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    version: str | None = Field(description="the agent version; null clears the target")
    nodes: list[str] | None = None
    selector: str | None = None
    image: str = Field(default="", max_length=1024, description="for kube nodes")
    deadline_seconds: int = Field(default=DEFAULT_DEADLINE_SECONDS, ge=1,
                                  le=MAX_DEADLINE_SECONDS, alias="deadlineSeconds")
    rollout: RolloutStrategy | None = Field(default=None, description="waves and gates, as "
                                            "an app's spec.rollout; none: every node at once")


@router.put(UPLOAD_PATH)
def upload(token: CurrentToken, body: RawBody, context: ContextDep) -> dict[str, Any]:
    """Store an agent wheel (the body); its version comes from its METADATA."""
    authorize(token, admin=True)
    wheel = wheels_of(context).add(body)
    return wheel.to_json(public_url=context.settings.public_url)


@router.get(UPLOAD_PATH)
def list_wheels(token: CurrentToken, context: ContextDep) -> dict[str, Any]:
    return {"items": [w.to_json(public_url=context.settings.public_url)
                      for w in wheels_of(context).list()]}


@router.get(f"{UPLOAD_PATH}/{{filename}}", response_class=FileResponse,
            responses={200: {"content": {"application/octet-stream": {}}}})
def download(filename: str, context: ContextDep) -> FileResponse:
    """An agent wheel, for nodes (no token: it holds code and no secret)."""
    path = wheels_of(context).path(filename)
    if path is None:
        raise NotFound(f"no agent wheel {filename!r}; see GET {UPLOAD_PATH}")
    return FileResponse(path, media_type="application/octet-stream", filename=filename)


@router.post("/v1/namespaces/{namespace}/agent/upgrade")
def upgrade(token: CurrentToken, namespace: str, request: UpgradeRequest, context: ContextDep,
            publisher: PublisherDep) -> dict[str, Any]:
    """Set the agent version of the nodes named and/or selected (all if neither)."""
    authorize(token, namespace=namespace, write=True)
    target = None
    if request.version is not None:
        target = target_for(wheels_of(context), request.version,
                            public_url=context.settings.public_url, image=request.image,
                            deadline_seconds=request.deadline_seconds)
    nodes = select_nodes(context.store, namespace, names=request.nodes, selector=request.selector)
    if not nodes:
        raise Rejection(ErrorCode.NOT_FOUND, "no node matches: name nodes or a selector that "
                                             "matches some")
    if request.rollout is not None:
        if target is None:
            raise Rejection(ErrorCode.BAD_REQUEST, "a rollout needs a version: clear the "
                                                         "target without one")
        started = agent_rollout.start(context.store, namespace, nodes, target, request.rollout,
                                      now=context.now())
        return {"target": target.to_json(), "nodes": nodes, "updated": [], "rollout": started}
    agent_rollout.forget(context.store, namespace)  # at once: no wave rollout goes on
    updated = set_agent_target(context.store, namespace, nodes, target, publisher=publisher,
                               topics=context.settings.topics, limits=context.settings.limits,
                               now=context.now())
    return {"target": None if target is None else target.to_json(), "nodes": nodes,
            "updated": updated}


@router.get("/v1/namespaces/{namespace}/agent/upgrade")
def status(token: CurrentToken, namespace: str, context: ContextDep,
           version: str | None = None) -> dict[str, Any]:
    """What each node reports of its agent, and (with ``version``) whether it runs it
    healthy: ``upgraded`` true, false (rolled back or failed) or null (not yet)."""
    authorize(token, namespace=namespace)
    nodes = select_nodes(context.store, namespace)
    with context.store.session() as session:
        return {"version": version,
                "nodes": agent_outcomes(session.connection(), namespace, nodes, version)}


@router.get("/v1/namespaces/{namespace}/agent/rollout")
def rollout_status(token: CurrentToken, namespace: str, context: ContextDep) -> dict[str, Any]:
    """The agent's wave rollout: phase, versions, wave, each admitted node's outcome."""
    authorize(token, namespace=namespace)
    with context.store.session() as session:
        return agent_rollout.status(session, namespace)


@router.post("/v1/namespaces/{namespace}/agent/rollout/{action}")
def rollout_action(token: CurrentToken, namespace: str, action: str,
                   context: ContextDep) -> dict[str, Any]:
    """``pause``, ``resume`` or ``undo`` (every node reached gets its previous target back)."""
    authorize(token, namespace=namespace, write=True)
    acts = {"pause": rollout_control.pause, "resume": rollout_control.resume,
            "undo": rollout_control.undo}
    if action not in acts:
        raise Rejection(ErrorCode.NOT_FOUND, f"no rollout action {action!r}: use pause, "
                                             "resume or undo")
    with context.store.session() as session:
        agent_rollout.status(session, namespace)  # 404 with what to do if there is none
    return acts[action](context.store, namespace, agent_rollout.NAME, now=context.now(),
                        kind=agent_rollout.KIND)
