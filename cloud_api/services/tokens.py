"""API tokens: the admin token of a fresh install, issuing scoped tokens, and checking them.

On first start the cloud writes a random admin token to ``DATA_DIR/admin.token`` (mode
0600) and stores only its hash, so an operator reads the file once and the database never
holds a usable secret. Every request's bearer token is hashed and looked up; ``authorize``
then applies the role and namespace rules of DESIGN §7.

Tokens are never cached: every request looks its token up, so a revoked token
(``revoke_api_token``) is refused from the very next request, on every replica. The last
admin token that is not revoked cannot be revoked (nobody could administer the cloud).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from cloud_api.errors import CloudError, Forbidden, NotFound, Unauthorized
from cloud_api.security.credentials import hash_secret, new_secret, read_or_create_secret_file
from cloud_api.services.auditing import AuditDraft
from cloud_api.services.listing import Page, decode_continue, encode_continue
from cloud_api.store.models import ApiToken, ApiTokenCreate, ApiTokenIssued, ApiTokenPublic, Role
from schemas.errors import ErrorCode

MAX_TOKEN_LENGTH = 512


def ensure_admin_token(session: Session, path: Path, *, now: int) -> Path:
    """Make the token in ``path`` (created if missing) a valid admin token; returns ``path``."""
    token, _ = read_or_create_secret_file(path)
    digest = hash_secret(token)
    if session.exec(select(ApiToken).where(ApiToken.token_hash == digest)).first() is None:
        session.add(
            ApiToken(
                role=Role.ADMIN,
                namespaces=[],
                description=f"admin token of {path}",
                token_hash=digest,
                created_at=now,
            )
        )
        try:
            session.commit()
        except IntegrityError:  # another replica on the same data dir stored it first
            session.rollback()
    return path


def create_api_token(
    session: Session, token_in: ApiTokenCreate, *, now: int, audit: AuditDraft | None = None
) -> ApiTokenIssued:
    """Issue a token; the plaintext is in the result and nowhere else. ``audit``: the
    request's audit draft, which learns the new token's id before the commit records it."""
    token = new_secret()
    row = ApiToken(
        role=token_in.role,
        namespaces=[] if token_in.role == Role.ADMIN else list(token_in.namespaces),
        description=token_in.description,
        token_hash=hash_secret(token),
        created_at=now,
    )
    session.add(row)
    session.flush()
    if audit is not None:
        audit.name = str(row.id)
    session.commit()
    return ApiTokenIssued.model_validate({**row.model_dump(), "token": token})


def authenticate_api_token(session: Session, token: str | None) -> ApiToken:
    """The stored token matching a bearer token; 401 if missing or unknown.

    The lookup is by SHA-256 of a 256-bit secret: a match on the hash is a match on the
    secret, and timing reveals nothing usable about either (see ``cloud_api.security.credentials``).
    """
    if not token:
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
    if len(token) > MAX_TOKEN_LENGTH:
        raise Unauthorized("invalid bearer token")
    row = session.exec(select(ApiToken).where(ApiToken.token_hash == hash_secret(token))).first()
    if row is None:
        raise Unauthorized("invalid bearer token")
    if row.revoked_at is not None:
        raise Unauthorized(f"token {row.id} was revoked; ask an admin for a new one")
    return row


def to_public(row: ApiToken) -> ApiTokenPublic:
    assert row.id is not None
    return ApiTokenPublic(id=row.id, role=str(row.role), namespaces=list(row.namespaces),
                          description=row.description, created_at=row.created_at,
                          revoked_at=row.revoked_at)


def list_api_tokens(
    session: Session, *, limit: int | None = None, continue_token: str | None = None,
    include_revoked: bool = True,
) -> Page:
    """Tokens by id (never their secret or hash)."""
    query = select(ApiToken).order_by(col(ApiToken.id))
    if not include_revoked:
        query = query.where(col(ApiToken.revoked_at).is_(None))
    if continue_token is not None:
        query = query.where(col(ApiToken.id) > decode_continue(continue_token, "tokens", int))
    if limit is not None:
        query = query.limit(limit + 1)
    rows = list(session.exec(query).all())
    more = limit is not None and len(rows) > limit
    rows = rows[:limit] if limit is not None else rows
    after = encode_continue("tokens", rows[-1].id) if more and rows else None
    return Page(items=[to_public(row) for row in rows], continue_token=after)


def get_api_token(session: Session, token_id: int) -> ApiToken:
    row = session.get(ApiToken, token_id)
    if row is None:
        raise NotFound(f"token {token_id} not found; `tether token list` shows them")
    return row


def revoke_api_token(session: Session, token_id: int, *, now: int) -> ApiToken:
    """Revoke a token (kept, marked); 404 unknown, 409 the last admin token. Commits."""
    row = get_api_token(session, token_id)
    if row.revoked_at is not None:
        return row
    if row.role == Role.ADMIN:
        admins = session.exec(select(func.count()).select_from(ApiToken).where(
            col(ApiToken.role) == Role.ADMIN, col(ApiToken.revoked_at).is_(None))).one()
        if int(admins) <= 1:
            raise CloudError(f"token {token_id} is the last admin token: create another admin "
                             "token before revoking it", code=ErrorCode.CONFLICT)
    row.revoked_at = now
    session.add(row)
    session.commit()
    return row


def authorize(
    token: ApiToken, *, namespace: str | None = None, write: bool = False, admin: bool = False
) -> None:
    """403 unless ``token`` may do this: admin-only work, a namespace it sees, a write."""
    if admin and token.role != Role.ADMIN:
        raise Forbidden("this needs an admin token")
    if namespace is not None and not token.sees(namespace):
        raise Forbidden(f"this token may not access namespace {namespace!r}")
    if write and token.role == Role.VIEWER:
        raise Forbidden("a viewer token may only read")
