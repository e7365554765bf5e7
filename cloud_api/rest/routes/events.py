"""``GET /v1/namespaces/{ns}/events``: the apps' crashes, restarts, back-offs and starts.

``?node=&app=&limit=&continue=`` -> ``{"items": [{"time", "node", "app", "service",
"kind", "message", "count"}], "continue": str|null}``, newest first (``time`` is when the
event last happened, ``count`` how often). ``limit`` 1-1000 (100 by default); pass the
answer's ``continue`` to get the next page. Read access to the namespace is needed (403);
unknown query parameters are a 400.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from cloud_api.rest.deps import CurrentToken, SessionDep
from cloud_api.rest.routes.logs import refuse_unknown_parameters
from cloud_api.services.events import list_events, to_public
from cloud_api.services.namespaces import get_namespace
from cloud_api.services.tokens import authorize
from schemas.names import validate_name

router = APIRouter(prefix="/v1/namespaces/{namespace}", tags=["events"])
PARAMETERS = frozenset({"node", "app", "limit", "continue"})


@router.get("/events")
def events(
    namespace: str,
    token: CurrentToken,
    session: SessionDep,
    request: Request,
    node: Annotated[str | None, Query(description="only this node's events")] = None,
    app: Annotated[str | None, Query(description="only this app's events")] = None,
    limit: Annotated[int | None, Query(description="items per page, 1-1000 (100)")] = None,
    continue_: Annotated[str | None, Query(alias="continue", description="from the previous page")] = None,
) -> dict[str, Any]:
    refuse_unknown_parameters(request, PARAMETERS)
    authorize(token, namespace=namespace)
    get_namespace(session, namespace)
    for value, kind in ((node, "node name"), (app, "app name")):
        if value is not None:
            validate_name(value, kind=kind)
    rows, token_next = list_events(session, namespace, node=node, app=app, limit=limit,
                                   continue_=continue_)
    return {"items": [to_public(row) for row in rows], "continue": token_next}
