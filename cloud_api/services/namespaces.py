"""Namespaces: the unit of tenancy that API tokens are scoped to. ``default`` always exists."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from cloud_api.errors import AlreadyExists, NotFound
from cloud_api.store.models import Namespace
from schemas.names import validate_name

DEFAULT_NAMESPACE = "default"


def create_namespace(session: Session, name: str, *, now: int) -> Namespace:
    """Create a namespace; 400 for a bad name, 409 if it exists."""
    validate_name(name, kind="namespace")
    if session.get(Namespace, name) is not None:
        raise AlreadyExists(f"namespace {name!r} already exists")
    namespace = Namespace(name=name, created_at=now)
    session.add(namespace)
    try:
        session.commit()
    except IntegrityError as exc:  # created concurrently by another request or replica
        session.rollback()
        raise AlreadyExists(f"namespace {name!r} already exists") from exc
    return namespace


def ensure_namespace(session: Session, name: str, *, now: int) -> Namespace:
    """The namespace ``name``, created if missing (idempotent, safe between replicas)."""
    try:
        return create_namespace(session, name, now=now)
    except AlreadyExists:
        return get_namespace(session, name)


def get_namespace(session: Session, name: str) -> Namespace:
    validate_name(name, kind="namespace")
    namespace = session.get(Namespace, name)
    if namespace is None:
        raise NotFound(f"namespace {name!r} not found: create it with POST /v1/namespaces")
    return namespace


def list_namespaces(
    session: Session, *, only: Collection[str] | None = None, limit: int | None = None,
    after: str | None = None,
) -> list[Namespace]:
    """All namespaces, or those named in ``only`` (what a scoped token sees); by name, at
    most ``limit`` of them after the name ``after`` (a keyset page)."""
    query = select(Namespace).order_by(col(Namespace.name))
    if only is not None:
        query = query.where(col(Namespace.name).in_(list(only)))
    if after is not None:
        query = query.where(col(Namespace.name) > after)
    if limit is not None:
        query = query.limit(limit)
    return list(session.exec(query).all())
