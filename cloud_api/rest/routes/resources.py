"""The routes every resource kind shares: list, create, get, replace (PUT), delete.

``resource_router(kind, body, wire_of)`` builds ``/v1/namespaces/{ns}/{kind}s`` for one
kind; ``apps.py``, ``configs.py``, ``secrets.py``, ``certificates.py`` and
``registries.py`` each make theirs with it (and add what only they have). The token is
checked (``ReadNamespace``/``WriteNamespace``) before the body is even parsed, so a token
without access to a namespace learns nothing about it from any answer. PUT creates the
resource if it is missing, so ``tether apply`` is one request. A write that gives some
app a new version owes a recompute of the desired apps of the namespace's nodes: it is
stored with the write and done in the background (``cloud_api.rematching``); the answer's
``affectedNodes`` says how many nodes it will update.

(No ``from __future__ import annotations`` here: the routes are made inside a function,
and FastAPI must see their annotations as objects, not as strings to resolve.)
"""

from collections.abc import Callable, Collection
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response, status
from pydantic import BaseModel
from sqlmodel import Session

from cloud_api.errors import CloudError
from cloud_api.mqtt.transport import Publisher
from cloud_api.rest.context import Context
from cloud_api.rest.deps import (
    ContextDep,
    CurrentToken,
    JsonBody,
    PublisherDep,
    SessionDep,
    body_of,
)
from cloud_api.rest.querying import LabelSelector, Paging, paged
from cloud_api.services.listing import Page
from cloud_api.services.matching import count_changes
from cloud_api.services.resources import (
    PUBLIC_MODELS,
    delete_resource,
    get_resource,
    page_resources,
    put_resource,
    to_public,
)
from cloud_api.services.secrets_crypto import SecretBox
from cloud_api.services.tokens import authorize
from cloud_api.store.models.resources import ResourceMeta, ResourceStatus
from schemas.errors import ErrorCode
from schemas.resources import RESOURCE_MODELS, ResourceKind

WireOf = Callable[[Session, Context, str, Any], dict[str, Any]]


def read_namespace(token: CurrentToken, namespace: str) -> str:
    authorize(token, namespace=namespace)
    return namespace


def write_namespace(token: CurrentToken, namespace: str) -> str:
    authorize(token, namespace=namespace, write=True)
    return namespace


ReadNamespace = Annotated[str, Depends(read_namespace)]
WriteNamespace = Annotated[str, Depends(write_namespace)]


def get_secret_box(request: Request) -> SecretBox:
    box: SecretBox = request.app.state.secret_box
    return box


SecretBoxDep = Annotated[SecretBox, Depends(get_secret_box)]


def matching_owed(
    session: Session, context: Context, namespace: str, *, nodes: Collection[str] | None = None
) -> int:
    """After a write that owes a match: how many nodes it will update; then start it."""
    affected = count_changes(session, namespace, nodes)
    context.matching_owed()
    return affected


def plain_wire(session: Session, context: Context, namespace: str, body: Any) -> dict[str, Any]:
    """The wire form of a body whose fields are the schema model's plus ``ResourceMeta``."""
    fields = body.model_dump(mode="json", by_alias=True, exclude_none=True,
                             exclude={"description", "labels"})
    kind_model = next(model for model in RESOURCE_MODELS.values() if isinstance(body, model))
    return kind_model.model_validate(fields).wire()


def _put_body_of(model: type[BaseModel]) -> Callable[..., Any]:
    """Like ``body_of``, with ``name`` defaulting to the path's (and 400 if they differ)."""
    parse = body_of(model)

    async def parse_put(name: str, body: JsonBody) -> Any:
        if isinstance(body, dict):
            given = body.setdefault("name", name)
            if given != name:
                raise CloudError(f"the body names {given!r} but the path {name!r}",
                                 code=ErrorCode.BAD_REQUEST)
        return await parse(body)

    return parse_put


def resource_router(kind: ResourceKind, body_model: type[ResourceMeta], wire_of: WireOf) -> APIRouter:
    plural = f"{kind.value}s" if kind is not ResourceKind.REGISTRY else "registries"
    router = APIRouter(prefix=f"/v1/namespaces/{{namespace}}/{plural}", tags=[plural])
    public: Any = PUBLIC_MODELS[kind]
    CreateBody = Annotated[Any, Depends(body_of(body_model))]
    PutBody = Annotated[Any, Depends(_put_body_of(body_model))]

    def write(
        session: Session, context: Context, publisher: Publisher, box: SecretBox,
        namespace: str, body: Any, *, create: bool,
    ) -> ResourceStatus:
        wire = wire_of(session, context, namespace, body)
        written = put_resource(session, box, namespace, kind, wire, description=body.description,
                               labels=body.labels, now=context.now(), create=create)
        public = to_public(written.resource, written.view)
        if written.apps_changed:
            affected = matching_owed(session, context, namespace)
            public = public.model_copy(update={"affected_nodes": affected})
        return public

    @router.get("", response_model=list[public], summary=f"List {plural}")
    def list_all(namespace: ReadNamespace, session: SessionDep, paging: Paging,
                 selector: LabelSelector, response: Response) -> list[Any]:
        page = page_resources(session, namespace, kind, selector=selector, limit=paging.limit,
                              continue_token=paging.continue_token)
        shown = Page([to_public(row, version.spec) for row, version in page.items],
                     page.continue_token)
        return paged(shown, response)

    @router.post("", status_code=status.HTTP_201_CREATED, response_model=public,
                 summary=f"Create a {kind.value}")
    def create(
        namespace: WriteNamespace, body: CreateBody, session: SessionDep, context: ContextDep,
        publisher: PublisherDep, box: SecretBoxDep,
    ) -> ResourceStatus:
        return write(session, context, publisher, box, namespace, body, create=True)

    @router.get("/{name}", response_model=public, summary=f"Get a {kind.value}")
    def get(namespace: ReadNamespace, name: str, session: SessionDep) -> ResourceStatus:
        row, version = get_resource(session, namespace, kind, name)
        return to_public(row, version.spec)

    @router.put("/{name}", response_model=public, summary=f"Create or replace a {kind.value}")
    def replace(
        namespace: WriteNamespace, name: str, body: PutBody, session: SessionDep,
        context: ContextDep, publisher: PublisherDep, box: SecretBoxDep,
    ) -> ResourceStatus:
        return write(session, context, publisher, box, namespace, body, create=False)

    @router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT,
                   summary=f"Delete a {kind.value}")
    def delete(
        namespace: WriteNamespace, name: str, session: SessionDep, context: ContextDep,
        publisher: PublisherDep,
    ) -> Response:
        delete_resource(session, namespace, kind, name, now=context.now())
        if kind is ResourceKind.APP:
            context.matching_owed()
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    return router
