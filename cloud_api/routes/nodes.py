"""``/v1/namespaces/{ns}/nodes``: list, create, get, delete.

Deleting a node also clears its retained ``status`` on the broker, so a node created
later under the same name does not start out looking online.
"""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from cloud_api.deps import ContextDep, CurrentToken, NodeCreateBody, PublisherDep, SessionDep
from cloud_api.models import NodePublic
from cloud_api.serving import clear_status
from cloud_api.services.nodes import create_node, delete_node, get_node, list_nodes, to_public
from cloud_api.services.tokens import authorize

router = APIRouter(prefix="/v1/namespaces/{namespace}/nodes", tags=["nodes"])


@router.get("", response_model=list[NodePublic])
def list_all(token: CurrentToken, namespace: str, session: SessionDep) -> list[NodePublic]:
    authorize(token, namespace=namespace)
    return [to_public(node) for node in list_nodes(session, namespace)]


@router.post("", status_code=status.HTTP_201_CREATED, response_model=NodePublic)
def create(
    token: CurrentToken,
    namespace: str,
    node_in: NodeCreateBody,
    session: SessionDep,
    context: ContextDep,
) -> NodePublic:
    authorize(token, namespace=namespace, write=True)
    return to_public(create_node(session, namespace, node_in, now=context.now()))


@router.get("/{node}", response_model=NodePublic)
def get(token: CurrentToken, namespace: str, node: str, session: SessionDep) -> NodePublic:
    authorize(token, namespace=namespace)
    return to_public(get_node(session, namespace, node))


@router.delete("/{node}", status_code=status.HTTP_204_NO_CONTENT)
def delete(
    token: CurrentToken,
    namespace: str,
    node: str,
    session: SessionDep,
    context: ContextDep,
    publisher: PublisherDep,
) -> Response:
    authorize(token, namespace=namespace, write=True)
    delete_node(session, namespace, node)
    clear_status(publisher, topics=context.settings.topics, namespace=namespace, node=node)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
