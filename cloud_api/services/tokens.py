"""API tokens: the admin token of a fresh install, issuing scoped tokens, and checking them.

On first start the cloud writes a random admin token to ``DATA_DIR/admin.token`` (mode
0600) and stores only its hash, so an operator reads the file once and the database never
holds a usable secret. Every request's bearer token is hashed and looked up; ``authorize``
then applies the role and namespace rules of DESIGN §7.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from cloud_api.errors import Forbidden, Unauthorized
from cloud_api.security.credentials import hash_secret, new_secret, read_or_create_secret_file
from cloud_api.store.models import ApiToken, ApiTokenCreate, ApiTokenIssued, Role

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


def create_api_token(session: Session, token_in: ApiTokenCreate, *, now: int) -> ApiTokenIssued:
    """Issue a token; the plaintext is in the result and nowhere else."""
    token = new_secret()
    row = ApiToken(
        role=token_in.role,
        namespaces=[] if token_in.role == Role.ADMIN else list(token_in.namespaces),
        description=token_in.description,
        token_hash=hash_secret(token),
        created_at=now,
    )
    session.add(row)
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
