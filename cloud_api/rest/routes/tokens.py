"""``POST /v1/tokens``: issue a scoped API token (admin only); its plaintext is shown once."""

from __future__ import annotations

from fastapi import APIRouter, status

from cloud_api.rest.deps import ApiTokenCreateBody, ContextDep, CurrentToken, SessionDep
from cloud_api.services.tokens import authorize, create_api_token
from cloud_api.store.models import ApiTokenIssued

router = APIRouter(prefix="/v1/tokens", tags=["tokens"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ApiTokenIssued)
def create(
    token: CurrentToken, token_in: ApiTokenCreateBody, session: SessionDep, context: ContextDep
) -> ApiTokenIssued:
    authorize(token, admin=True)
    return create_api_token(session, token_in, now=context.now())
