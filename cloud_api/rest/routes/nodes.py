"""``/v1/namespaces/{ns}/nodes``: list, create (one, or many with ``nodes:bulk``), get,
change (labels), delete, revoke.

Deleting a node also clears its retained ``status`` on the broker, so a node created
later under the same name does not start out looking online.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status

from cloud_api.rest.deps import (
    ContextDep,
    CurrentToken,
    NodeCreateBody,
    PublisherDep,
    SessionDep,
    body_of,
)
from cloud_api.rest.querying import LabelSelector, Paging, paged
from cloud_api.rest.routes.resources import ReadNamespace, WriteNamespace
from cloud_api.security.revocation import Revocations
from cloud_api.services.node_certificates import revoke_node_credentials
from cloud_api.services.nodes import (
    create_node,
    create_nodes,
    delete_node,
    get_node,
    page_nodes,
    summarize_nodes,
    to_public,
    update_node,
)
from cloud_api.services.shadows import clear_status
from cloud_api.services.tokens import authorize
from cloud_api.store.models import NodeBulkCreate, NodeBulkResult, NodePublic, NodeUpdate
from schemas.names import node_identity

router = APIRouter(prefix="/v1/namespaces/{namespace}/nodes", tags=["nodes"])
bulk_router = APIRouter(tags=["nodes"])


@router.get("", response_model=list[NodePublic])
def list_all(
    namespace: ReadNamespace, session: SessionDep, paging: Paging, selector: LabelSelector,
    response: Response,
    online: Annotated[bool | None, Query(description="only nodes online (true) or not")] = None,
) -> list[Any]:
    """By name; ``limit`` + ``continue`` page (next page's token in ``X-Continue``),
    ``labelSelector`` and ``online`` filter in the database."""
    page = page_nodes(session, namespace, selector=selector, online=online,
                      limit=paging.limit, continue_token=paging.continue_token)
    return paged(page, response)


@bulk_router.get("/v1/namespaces/{namespace}/nodes:summary",
                 summary="Counts for the fleet view: nodes by state, apps by status")
def summary(namespace: ReadNamespace, session: SessionDep, context: ContextDep) -> dict[str, Any]:
    """``{"namespace", "nodes": {total, online, offline, revoked}, "apps": {"byStatus":
    {STATUS: n}, "byApp": {APP: {STATUS: n}}}}``: statuses as the nodes report them."""
    return summarize_nodes(session, namespace, now=context.now())


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


NodeBulkBody = Annotated[NodeBulkCreate, Depends(body_of(NodeBulkCreate))]


# a path of its own, not under /nodes/{node}: "bulk" is a valid node name
@bulk_router.post("/v1/namespaces/{namespace}/nodes:bulk", response_model=NodeBulkResult,
                  summary="Create many nodes; each item reports created, exists or failed")
def create_many(
    token: CurrentToken,
    namespace: str,
    body: NodeBulkBody,
    session: SessionDep,
    context: ContextDep,
) -> NodeBulkResult:
    """Up to 1,000 nodes per request in one transaction; an item that fails (bad name or
    labels, listed twice) does not stop the others, and one that exists is left as it is."""
    authorize(token, namespace=namespace, write=True)
    return create_nodes(session, namespace, body.items, now=context.now())


@router.get("/{node}", response_model=NodePublic)
def get(token: CurrentToken, namespace: str, node: str, session: SessionDep) -> NodePublic:
    authorize(token, namespace=namespace)
    return to_public(get_node(session, namespace, node))


NodeUpdateBody = Annotated[NodeUpdate, Depends(body_of(NodeUpdate))]


@router.patch("/{node}", response_model=NodePublic)
def patch(
    namespace: WriteNamespace,
    node: str,
    node_in: NodeUpdateBody,
    session: SessionDep,
    context: ContextDep,
    publisher: PublisherDep,
) -> NodePublic:
    """Change the labels and/or the description sent; new labels rematch the node's apps."""
    updated = update_node(session, namespace, node, node_in, now=context.now())
    if node_in.labels is not None:
        context.matching_owed()
    return to_public(updated)


@router.put("/{node}", response_model=NodePublic)
def put(
    namespace: WriteNamespace,
    node: str,
    node_in: NodeUpdateBody,
    session: SessionDep,
    context: ContextDep,
    publisher: PublisherDep,
) -> NodePublic:
    """Replace labels and description (a field left out becomes empty)."""
    full = NodeUpdate(labels=node_in.labels or {}, description=node_in.description or "")
    return patch(namespace, node, full, session, context, publisher)


@router.delete("/{node}", status_code=status.HTTP_204_NO_CONTENT)
def delete(
    token: CurrentToken,
    namespace: str,
    node: str,
    session: SessionDep,
    context: ContextDep,
    publisher: PublisherDep,
    request: Request,
) -> Response:
    authorize(token, namespace=namespace, write=True)
    delete_node(session, namespace, node, now=context.now())
    clear_status(publisher, topics=context.settings.topics, namespace=namespace, node=node)
    announce_revocation(request, namespace, node)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{node}/revoke", status_code=status.HTTP_204_NO_CONTENT)
def revoke(
    token: CurrentToken,
    namespace: str,
    node: str,
    session: SessionDep,
    context: ContextDep,
    request: Request,
) -> Response:
    """Revoke the node's password and certificates; it must be activated again."""
    authorize(token, namespace=namespace, write=True)
    get_node(session, namespace, node)
    revoke_node_credentials(session, namespace, node, now=context.now())
    session.commit()
    announce_revocation(request, namespace, node)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def announce_revocation(request: Request, namespace: str, node: str) -> None:
    """Tell the broker's owner (``Cloud.revocations``) to disconnect the node now."""
    revocations: Revocations | None = getattr(request.app.state, "revocations", None)
    if revocations is not None and not getattr(request.state, "dry_run", False):
        revocations.announce(node_identity(namespace, node))
