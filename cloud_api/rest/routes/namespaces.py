"""``/v1/namespaces``: create (admin), list (what the token sees), get."""

from __future__ import annotations

from fastapi import APIRouter, status

from cloud_api.rest.deps import ContextDep, CurrentToken, NamespaceCreateBody, SessionDep
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
def list_all(token: CurrentToken, session: SessionDep) -> list[Namespace]:
    return list_namespaces(session, only=None if token.role == Role.ADMIN else token.namespaces)


@router.get("/{namespace}", response_model=NamespacePublic)
def get(token: CurrentToken, namespace: str, session: SessionDep) -> Namespace:
    authorize(token, namespace=namespace)
    return get_namespace(session, namespace)
