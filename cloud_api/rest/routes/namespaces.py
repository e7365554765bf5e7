"""``/v1/namespaces``: create (admin), list (what the token sees), get."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from cloud_api.rest.deps import ContextDep, CurrentToken, NamespaceCreateBody, SessionDep
from cloud_api.rest.querying import Paging
from cloud_api.services.listing import decode_continue, encode_continue
from cloud_api.services.namespaces import create_namespace, get_namespace, list_namespaces
from cloud_api.services.tokens import authorize
from cloud_api.store.models import Namespace, NamespacePublic, Role

router = APIRouter(prefix="/v1/namespaces", tags=["namespaces"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=NamespacePublic)
def create(
    token: CurrentToken, namespace_in: NamespaceCreateBody, session: SessionDep, context: ContextDep
) -> Namespace:
    authorize(token, admin=True)
    return create_namespace(session, namespace_in.name, now=context.now())


@router.get("", response_model=list[NamespacePublic])
def list_all(token: CurrentToken, session: SessionDep, paging: Paging,
             response: Response) -> list[Namespace]:
    """By name; ``limit`` + ``continue`` page (the next page's token in ``X-Continue``)."""
    after = (None if paging.continue_token is None
             else decode_continue(paging.continue_token, "namespaces"))
    limit = None if paging.limit is None else paging.limit + 1
    found = list_namespaces(session, only=None if token.role == Role.ADMIN else token.namespaces,
                            limit=limit, after=after)
    if paging.limit is not None and len(found) > paging.limit:
        found = found[:paging.limit]
        response.headers["X-Continue"] = encode_continue("namespaces", found[-1].name)
    return found


@router.get("/{namespace}", response_model=NamespacePublic)
def get(token: CurrentToken, namespace: str, session: SessionDep) -> Namespace:
    authorize(token, namespace=namespace)
    return get_namespace(session, namespace)
