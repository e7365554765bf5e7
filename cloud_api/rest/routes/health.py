"""``GET /healthz`` (the database answers: ready), ``GET /livez`` (the process answers) and
``GET /metrics`` (Prometheus text).

Two probes because they ask different things: a cloud whose database is away should be
taken out of a load balancer (``/healthz`` 503) but not restarted, which would not bring
the database back (``/livez`` stays 200 while the HTTP server answers). The Kubernetes
manifests (deploy/kubernetes) use ``/healthz`` for readiness and ``/livez`` for liveness.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse

from cloud_api.errors import CloudError
from cloud_api.metrics import BRIDGE_CONNECTED, NODES_ONLINE
from cloud_api.rest.context import Context
from cloud_api.rest.deps import ContextDep
from cloud_api.services.nodes import count_online

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
def metrics(context: ContextDep) -> PlainTextResponse:
    gauges: dict[str, float] = {}
    if context.bridge is not None:
        gauges[BRIDGE_CONNECTED] = 1 if context.bridge.connected else 0
    try:
        with context.store.session() as session:
            gauges[NODES_ONLINE] = count_online(session)
    except CloudError:
        pass  # the counters are still worth scraping while the database is away
    return PlainTextResponse(context.metrics.render(gauges), media_type="text/plain; version=0.0.4")
