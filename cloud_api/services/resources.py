"""Storing resources: versions, pinning, referrers, sealing (DESIGN §7).

Why it exists: every kind (app, config, secret, certificate, registry) follows one set of
rules, so they are written once here:

- A write computes the keyed hash of the content (``SecretBox.content_hash``); only a
  different hash makes a new version: ``max(version) + 1``, so a version number is never
  reused, even after a delete and re-create. Each version is an immutable
  ``ResourceVersion`` row; secrets, registries and certificates keep their full content
  sealed there, and a public view beside it.
- An app's unpinned references (``{"config": {"name": "x"}}``) are pinned to the
  referent's current version at write time; an unknown referent is 404, naming it.
- A new version of a config, secret, certificate or registry re-pins every app that
  references it, which makes a new version of each of those apps (same transaction).
- Deleting a resource some app still references is 409, naming the apps.

A write that gives some app a new version (``Written.apps_changed``), or deletes an app,
owes a recompute of the nodes' desired apps: ``services.matching.request_match`` records it
in the same transaction, and the caller wakes ``cloud_api.rematching``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func
from sqlmodel import Session, col, select

from cloud_api.errors import AlreadyExists, CloudError, NotFound
from cloud_api.services.certificates import certificate_view
from cloud_api.services.listing import Page, decode_continue, encode_continue, selector_sql
from cloud_api.services.matching import request_match
from cloud_api.services.namespaces import get_namespace
from cloud_api.services.rollout_state import forget, version_written
from cloud_api.services.secrets_crypto import SecretBox
from cloud_api.store.models.resources import (
    AppCreate,
    AppPublic,
    CertificatePublic,
    ConfigPublic,
    RefIn,
    RegistryPublic,
    Resource,
    ResourceStatus,
    ResourceVersion,
    SecretPublic,
)
from schemas.errors import ErrorCode
from schemas.labels import Selector
from schemas.names import validate_name
from schemas.resources import App, ResourceKind

SEALED_KINDS = frozenset({ResourceKind.SECRET, ResourceKind.REGISTRY, ResourceKind.CERTIFICATE})
PUBLIC_MODELS: dict[ResourceKind, type[ResourceStatus]] = {
    ResourceKind.APP: AppPublic,
    ResourceKind.CONFIG: ConfigPublic,
    ResourceKind.SECRET: SecretPublic,
    ResourceKind.CERTIFICATE: CertificatePublic,
    ResourceKind.REGISTRY: RegistryPublic,
}


@dataclass(frozen=True)
class Written:
    resource: Resource
    view: dict[str, Any]
    changed: bool  # a new version was made
    apps_changed: bool  # some app has a new version: nodes' desired apps must be recomputed


def public_view(kind: ResourceKind, wire: dict[str, Any]) -> dict[str, Any]:
    """What REST may show of a resource's content: never a secret value, key or password."""
    if kind is ResourceKind.SECRET:
        return {"name": wire["name"], "keys": sorted(wire.get("data", {}))}
    if kind is ResourceKind.REGISTRY:
        return {k: v for k, v in wire.items() if k != "password"}
    if kind is ResourceKind.CERTIFICATE:
        return certificate_view(wire)
    return wire


def to_public(resource: Resource, view: dict[str, Any]) -> ResourceStatus:
    model = PUBLIC_MODELS[ResourceKind(resource.kind)]
    return model.model_validate(
        {
            **view,
            "namespace": resource.namespace,
            "version": str(resource.version),
            "createdAt": resource.created_at,
            "updatedAt": resource.updated_at,
            "description": resource.description,
            "labels": resource.labels,
        }
    )


def _label(kind: ResourceKind, namespace: str, name: str) -> str:
    return f"{kind.value} {namespace}/{name}"


# -- reads -----------------------------------------------------------------------------
def _current(namespace: str, kind: ResourceKind) -> Any:
    return (
        select(Resource, ResourceVersion)
        .join(
            ResourceVersion,
            and_(
                col(ResourceVersion.namespace) == col(Resource.namespace),
                col(ResourceVersion.kind) == col(Resource.kind),
                col(ResourceVersion.name) == col(Resource.name),
                col(ResourceVersion.version) == col(Resource.version),
            ),
        )
        .where(col(Resource.namespace) == namespace, col(Resource.kind) == kind.value)
        .order_by(col(Resource.name))
    )


def list_resources(
    session: Session, namespace: str, kind: ResourceKind
) -> list[tuple[Resource, ResourceVersion]]:
    get_namespace(session, namespace)
    return [(row, version) for row, version in session.exec(_current(namespace, kind)).all()]


def page_resources(
    session: Session, namespace: str, kind: ResourceKind, *, selector: Selector | None = None,
    limit: int | None = None, continue_token: str | None = None,
) -> Page:
    """A keyset page of ``(Resource, ResourceVersion)`` by name, the selector matched in SQL
    against the resources' labels; all of them without ``limit``."""
    get_namespace(session, namespace)
    scope = f"{kind.value}s/{namespace}"
    query = _current(namespace, kind).where(selector_sql(col(Resource.labels), selector))
    if continue_token is not None:
        query = query.where(col(Resource.name) > decode_continue(continue_token, scope))
    if limit is not None:
        query = query.limit(limit + 1)
    rows = [(row, version) for row, version in session.exec(query).all()]
    more = limit is not None and len(rows) > limit
    rows = rows[:limit] if limit is not None else rows
    after = encode_continue(scope, rows[-1][0].name) if more and rows else None
    return Page(items=rows, continue_token=after)


def get_resource(
    session: Session, namespace: str, kind: ResourceKind, name: str
) -> tuple[Resource, ResourceVersion]:
    validate_name(namespace, kind="namespace")
    validate_name(name, kind=f"{kind.value} name")
    found = session.exec(_current(namespace, kind).where(col(Resource.name) == name)).first()
    if found is None:
        raise NotFound(f"{_label(kind, namespace, name)} not found")
    return found[0], found[1]


def get_version(
    session: Session, namespace: str, kind: ResourceKind, name: str, version: int
) -> ResourceVersion | None:
    return session.get(ResourceVersion, (namespace, kind.value, name, version))


def open_version(box: SecretBox | None, row: ResourceVersion) -> dict[str, Any]:
    """The full wire form of a stored version (unsealed; 500 if sealed and no ``box``)."""
    if row.sealed is not None:
        if box is None:
            raise CloudError("this cloud has no secret key to open sealed resources")
        value: dict[str, Any] = box.open(row.sealed)
        return value
    if ResourceKind(row.kind) in SEALED_KINDS:
        raise NotFound(f"{row.kind} {row.namespace}/{row.name} version {row.version} was deleted")
    return row.spec


def referrers(
    session: Session, namespace: str, kind: ResourceKind, name: str
) -> list[tuple[Resource, ResourceVersion]]:
    """The apps whose current version references ``kind/name`` (any version of it)."""
    out = []
    for app, version in session.exec(_current(namespace, ResourceKind.APP)).all():
        refs = App.model_validate(version.spec).references()
        if any(ref_kind is kind and ref.name == name for ref_kind, ref in refs):
            out.append((app, version))
    return out


# -- writes ----------------------------------------------------------------------------
def pin_app(session: Session, namespace: str, app: AppCreate) -> dict[str, Any]:
    """The app's wire form with every reference pinned; 404 naming an unknown referent."""

    def pinned(kind: ResourceKind, ref: RefIn) -> dict[str, str]:
        if ref.version is None:
            current = session.get(Resource, (namespace, kind.value, ref.name))
            if current is None:
                raise NotFound(f"app {app.name!r} references {_label(kind, namespace, ref.name)}, "
                               "which does not exist")
            return {"name": ref.name, "version": str(current.version)}
        if not ref.version.isdigit() or get_version(
            session, namespace, kind, ref.name, int(ref.version)
        ) is None:
            raise NotFound(f"app {app.name!r} references {_label(kind, namespace, ref.name)} "
                           f"version {ref.version!r}, which does not exist")
        return {"name": ref.name, "version": ref.version}

    wire = app.model_dump(mode="json", by_alias=True, exclude_none=True,
                          exclude={"description", "labels"})
    for volume, given in zip(wire.get("volumes", []), app.volumes, strict=True):
        pin = given.pinned()
        if pin is not None:
            volume[pin[0].value] = pinned(pin[0], pin[1])  # type: ignore[arg-type]
    wire["registries"] = [pinned(ResourceKind.REGISTRY, ref) for ref in app.registries]
    return App.model_validate(wire).wire()


def put_resource(
    session: Session,
    box: SecretBox,
    namespace: str,
    kind: ResourceKind,
    wire: dict[str, Any],
    *,
    description: str,
    labels: dict[str, str],
    now: int,
    create: bool,
) -> Written:
    """Create (``create``: 409 if it exists) or replace a resource; commits."""
    get_namespace(session, namespace)
    name = validate_name(wire["name"], kind=f"{kind.value} name")
    existing = session.get(Resource, (namespace, kind.value, name))
    if create and existing is not None:
        raise AlreadyExists(f"{_label(kind, namespace, name)} already exists")
    written = _write(session, box, namespace, kind, wire, description=description,
                     labels=labels, now=now)
    if written.apps_changed:  # stored with the change: a stored change is never left unmatched
        request_match(session, namespace, now=now)
    session.commit()
    return written


def _write(
    session: Session,
    box: SecretBox,
    namespace: str,
    kind: ResourceKind,
    wire: dict[str, Any],
    *,
    description: str,
    labels: dict[str, str],
    now: int,
) -> Written:
    name = wire["name"]
    digest = box.content_hash(wire)
    row = session.get(Resource, (namespace, kind.value, name))
    if row is not None and row.content_hash == digest:
        row.description, row.labels, row.updated_at = description, dict(labels), now
        session.add(row)
        return Written(row, public_view(kind, wire), changed=False, apps_changed=False)
    last = session.exec(
        select(func.max(ResourceVersion.version)).where(
            col(ResourceVersion.namespace) == namespace,
            col(ResourceVersion.kind) == kind.value,
            col(ResourceVersion.name) == name,
        )
    ).one()
    version = int(last or 0) + 1
    if kind is ResourceKind.APP:  # a rollout (spec.rollout) starts with the version
        version_written(session, namespace, name, previous=str(row.version) if row else None,
                        target=str(version), strategy=wire.get("rollout"), now=now)
    view = public_view(kind, wire)
    sealed = box.seal(wire) if kind in SEALED_KINDS else None
    session.add(ResourceVersion(namespace=namespace, kind=kind.value, name=name, version=version,
                                spec=view, sealed=sealed, created_at=now))
    if row is None:
        row = Resource(namespace=namespace, kind=kind.value, name=name, created_at=now,
                       version=version, content_hash=digest, updated_at=now)
    row.version, row.content_hash, row.updated_at = version, digest, now
    row.description, row.labels = description, dict(labels)
    row.selector = wire.get("selector", "") if kind is ResourceKind.APP else ""
    session.add(row)
    session.flush()
    apps_changed = kind is ResourceKind.APP
    if kind is not ResourceKind.APP:
        for app, app_version in referrers(session, namespace, kind, name):
            repinned = _repin(app_version.spec, kind, name, str(version))
            _write(session, box, namespace, ResourceKind.APP, repinned,
                   description=app.description, labels=app.labels, now=now)
            apps_changed = True
    return Written(row, view, changed=True, apps_changed=apps_changed)


def _repin(app_wire: dict[str, Any], kind: ResourceKind, name: str, version: str) -> dict[str, Any]:
    wire = {**app_wire, "volumes": [dict(v) for v in app_wire.get("volumes", [])]}
    for volume in wire["volumes"]:
        ref = volume.get(kind.value)
        if ref is not None and ref["name"] == name:
            volume[kind.value] = {"name": name, "version": version}
    if kind is ResourceKind.REGISTRY:
        wire["registries"] = [
            {"name": name, "version": version} if ref["name"] == name else ref
            for ref in app_wire.get("registries", [])
        ]
    return wire


def delete_resource(
    session: Session, namespace: str, kind: ResourceKind, name: str, *, now: int = 0
) -> None:
    """Delete a resource; 409 while an app references it. Sealed content is purged.
    Deleting an app owes a match of the namespace (``services.matching``)."""
    row, _ = get_resource(session, namespace, kind, name)
    if kind is not ResourceKind.APP:
        using = sorted(app.name for app, _ in referrers(session, namespace, kind, name))
        if using:
            raise CloudError(
                f"{_label(kind, namespace, name)} is used by app(s) {', '.join(using)}: "
                "change or delete them first",
                code=ErrorCode.CONFLICT,
            )
    if kind in SEALED_KINDS:
        versions = session.exec(
            select(ResourceVersion).where(
                col(ResourceVersion.namespace) == namespace,
                col(ResourceVersion.kind) == kind.value,
                col(ResourceVersion.name) == name,
            )
        ).all()
        for version in versions:  # kept (numbers are never reused), content gone
            version.sealed = None
            session.add(version)
    session.delete(row)
    if kind is ResourceKind.APP:
        forget(session, namespace, name)
        request_match(session, namespace, now=now)
    session.commit()
