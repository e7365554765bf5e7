"""Query parameters every list shares, and the rule that no query parameter is ignored.

Why it exists: at fleet size a list must page (``limit`` + ``continue``) and filter
(``labelSelector``) on the server, the same way on every endpoint; and a parameter the
server does not know (a typo such as ``labelselector``, or ``fieldSelector`` it does not
serve) must be a 400 naming it, never silently ignored and answered with everything.

Lists keep their JSON array bodies (clients of the first release read them); when more
items remain, the answer carries the opaque token for the next page in the
``X-Continue`` header, to send back as ``?continue=``. No ``X-Continue``: the last page.
Without ``limit`` a list returns everything, as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Query, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from cloud_api.services.auditing import is_audited
from cloud_api.services.listing import MAX_LIMIT, Page
from schemas.errors import ErrorCode, Rejection
from schemas.labels import Selector, parse_selector

CONTINUE_HEADER = "X-Continue"
# a route whose query string is another program's contract (RabbitMQ's HTTP auth backend
# sends what its version sends) marks itself with this OpenAPI extension, naming the contract
FOREIGN_QUERY = "x-query-contract"
WRITE_PARAMETERS = frozenset({"dryRun"})  # every audited write takes it (``deps.get_session``)


@dataclass(frozen=True)
class PageParams:
    limit: int | None
    continue_token: str | None


def page_params(
    limit: Annotated[int | None, Query(ge=1, le=MAX_LIMIT,
                                       description="at most this many items")] = None,
    continue_: Annotated[str | None, Query(alias="continue", max_length=512,
                                           description="the X-Continue of the page before")] = None,
) -> PageParams:
    return PageParams(limit=limit, continue_token=continue_)


Paging = Annotated[PageParams, Depends(page_params)]


def label_selector(
    labelSelector: Annotated[str | None, Query(
        max_length=4096, description="Kubernetes label selector, e.g. site=paris,tier!=db")] = None,
) -> Selector:
    return parse_selector(labelSelector or "")


LabelSelector = Annotated[Selector, Depends(label_selector)]


def paged(page: Page, response: Response) -> list[Any]:
    """The page's items; its continue token, if any, in the ``X-Continue`` header."""
    if page.continue_token is not None:
        response.headers[CONTINUE_HEADER] = page.continue_token
    return page.items


_known: dict[int, frozenset[str]] = {}


def _query_names(route: APIRoute) -> frozenset[str]:
    names = _known.get(id(route))
    if names is None:
        names = frozenset(_walk(route.dependant))
        _known[id(route)] = names
    return names


def _walk(dependant: Dependant) -> set[str]:
    """The names of the query parameters of ``dependant`` and all it depends on."""
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _walk(sub)
    return names


def takes_dry_run(method: str, path: str) -> bool:
    """The writes that take ``dryRun``: the audited ones (not activation, not invocations)."""
    return method != "GET" and is_audited(method, path)


def refuse_unknown_query(request: Request) -> None:
    """400 for a query parameter the route does not take (``/v1`` routes only)."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not request.url.path.startswith("/v1/"):
        return
    if (route.openapi_extra or {}).get(FOREIGN_QUERY):  # another program's contract decides
        return
    known = _query_names(route)
    if takes_dry_run(request.method, request.url.path):
        known = known | WRITE_PARAMETERS
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        takes = ", ".join(sorted(known)) if known else "no query parameters"
        raise Rejection(ErrorCode.BAD_REQUEST,
                        f"unknown query parameter(s) {', '.join(unknown)}: "
                        f"{request.method} {route.path} takes {takes}")
