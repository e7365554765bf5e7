"""``GET /healthz`` (the database answers: ready), ``GET /livez`` (the process answers) and
``GET /metrics`` (Prometheus text, with
the fleet gauges of ``services.fleet_status`` read at each scrape).

Two probes because they ask different things: a cloud whose database is away should be
taken out of a load balancer (``/healthz`` 503) but not restarted, which would not bring
the database back (``/livez`` stays 200 while the HTTP server answers). The Kubernetes
manifests (deploy/kubernetes) use ``/healthz`` for readiness and ``/livez`` for liveness.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client.core import Metric

from cloud_api.errors import CloudError
from cloud_api.metrics import BRIDGE_CONNECTED, CONTENT_TYPE, NODES_ONLINE, gauge
from cloud_api.rest.context import Context
from cloud_api.rest.deps import ContextDep
from cloud_api.services.fleet_status import app_counts, node_states
from cloud_api.services.tokens import authenticate_api_token
from cloud_api.store.models import Role
from schemas.errors import Rejection

router = APIRouter(tags=["health"])


def _bridge_state(context: Context) -> dict[str, str]:
    """``bridge``: off, connected, disconnected or failed; ``bridgeError`` says why it failed."""
    if context.bridge is None:
        return {"bridge": "off"}
    probe = context.share_probe
    if probe is not None and probe.problem is not None:
        return {"bridge": "failed", "bridgeError": probe.problem}
    if context.bridge.connected:
        return {"bridge": "connected"}
    problem = context.bridge.problem
    return {"bridge": "disconnected", **({"bridgeError": problem} if problem else {})}


@router.get("/healthz")
def healthz(context: ContextDep) -> JSONResponse:
    """200 while the database answers; 503 otherwise. The bridge state is informative."""
    try:
        context.store.ping()
    except CloudError as exc:
        body = {"status": "unavailable", "database": exc.message, **_bridge_state(context)}
        return JSONResponse(body, status_code=503, headers={"Retry-After": "2"})
    return JSONResponse({"status": "ok", "database": "ok", **_bridge_state(context)})


@router.get("/livez")
def livez() -> dict[str, str]:
    """200 while the process serves HTTP, whatever its database or broker is doing."""
    return {"status": "ok"}


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(context: ContextDep, request: Request) -> Response:
    """Prometheus text: this process's counters and histograms, and the fleet's gauges read
    from the database now (the same on every replica). The gauges that name namespaces and
    apps are for an admin token only: without one, a scrape shows no tenant's names."""
    # read by hand, not as a security dependency: /metrics never answers 401, a scrape
    # without a token (or with a wrong one) gets what anyone may see
    scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
    named = _is_admin(context, bearer.strip() if scheme.lower() == "bearer" else None)
    return Response(context.metrics.render(fleet_gauges(context, named=named)),
                    media_type=CONTENT_TYPE)


def _is_admin(context: Context, bearer: str | None) -> bool:
    if not bearer:
        return False
    try:
        with context.store.session() as session:
            return authenticate_api_token(session, bearer).role == Role.ADMIN
    except (CloudError, Rejection):
        return False


def fleet_gauges(context: Context, *, named: bool = True) -> list[Metric]:
    """The gauges of this scrape; without a database, only the bridge's; ``named``: also
    those labelled by namespace and app."""
    families: list[Metric] = []
    if context.bridge is not None:
        families.append(gauge(BRIDGE_CONNECTED, "1 if this process's MQTT bridge is connected.",
                              (), [((), 1 if context.bridge.connected else 0)]))
    try:
        with context.store.session() as session:
            states = node_states(session)
            apps = app_counts(session)
    except CloudError:
        return families  # the counters are still worth scraping while the database is away
    online = sum(counts["online"] for counts in states.values())
    families.append(gauge(NODES_ONLINE, "Nodes whose last status said online.", (), [((), online)]))
    if not named:
        return families
    families.append(gauge(
        "tether_nodes", "Nodes by namespace and state (online|offline|revoked|new).",
        ("namespace", "state"),
        [((ns, state), number) for ns, counts in sorted(states.items())
         for state, number in counts.items()]))
    families.append(gauge(
        "tether_app_nodes", "Nodes an app is matched to, by the status they report of it.",
        ("namespace", "app", "status"),
        [((ns, app, status), number) for ns, by_app in sorted(apps.items())
         for app, counts in sorted(by_app.items())
         for status, number in sorted(counts.by_status.items())]))
    return families
