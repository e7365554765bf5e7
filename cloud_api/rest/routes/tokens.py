"""``/v1/tokens``: issue, list, describe and revoke API tokens (admin only).

The plaintext of a token is in the answer to its creation and nowhere else, ever: lists
and descriptions show its id, role, namespaces, description and dates. Revoking keeps the
row (the audit trail names it) and takes effect on the next request (tokens are never
cached).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from cloud_api.rest.deps import ApiTokenCreateBody, ContextDep, CurrentToken, SessionDep
from cloud_api.rest.querying import Paging, paged
from cloud_api.services.tokens import (
    authorize,
    create_api_token,
    get_api_token,
    list_api_tokens,
    revoke_api_token,
    to_public,
)
from cloud_api.store.models import ApiTokenIssued, ApiTokenPublic

router = APIRouter(prefix="/v1/tokens", tags=["tokens"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ApiTokenIssued)
def create(
    token: CurrentToken, token_in: ApiTokenCreateBody, session: SessionDep, context: ContextDep,
    request: Request,
) -> ApiTokenIssued:
    authorize(token, admin=True)
    draft = getattr(request.state, "audit", None)
    issued = create_api_token(session, token_in, now=context.now(), audit=draft)
    return issued


@router.get("", response_model=list[ApiTokenPublic])
def list_all(token: CurrentToken, session: SessionDep, paging: Paging,
             response: Response) -> list[ApiTokenPublic]:
    authorize(token, admin=True)
    page = list_api_tokens(session, limit=paging.limit, continue_token=paging.continue_token)
    return paged(page, response)


@router.get("/{token_id}", response_model=ApiTokenPublic)
def get(token: CurrentToken, token_id: int, session: SessionDep) -> ApiTokenPublic:
    authorize(token, admin=True)
    return to_public(get_api_token(session, token_id))


@router.post("/{token_id}/revoke", response_model=ApiTokenPublic)
def revoke(token: CurrentToken, token_id: int, session: SessionDep,
           context: ContextDep) -> ApiTokenPublic:
    """Revoke the token: refused (401) from its next request on; the row is kept."""
    authorize(token, admin=True)
    return to_public(revoke_api_token(session, token_id, now=context.now()))
