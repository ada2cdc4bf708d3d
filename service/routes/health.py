from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from service.deps import IndexDep, PortsDep, SettingsDep
from service.schemas import Health

router = APIRouter(tags=["health"])


@router.get(
    "/healthz",
    response_model=Health,
    summary="Liveness: the process answers and has not been stuck not-ready too long",
    responses={503: {"model": Health, "description": "not ready for too long: restart me"}},
)
def healthz(index: IndexDep, settings: SettingsDep) -> JSONResponse:
    """Not ready for longer than TAILOR_UNREADY_UNHEALTHY_AFTER_S means the index load
    keeps failing; failing liveness lets an orchestrator restart the process."""
    stuck = index.unready_for_s() > settings.unready_unhealthy_after_s
    body = Health(status="unhealthy" if stuck else "ok", index=str(index.state))
    return JSONResponse(body.model_dump(), status_code=503 if stuck else 200)


@router.get(
    "/readyz",
    response_model=Health,
    summary="Readiness: the vector index is loaded or rebuilt, and the chat model loaded",
    description=(
        "200 once this replica can serve turns; 503 while it loads or rebuilds its vector index "
        "from SQL, or (with TAILOR_EAGER_LOAD, the default) while it loads the chat model. A "
        "load balancer should route only to ready replicas."
    ),
    responses={503: {"model": Health, "description": "still loading or rebuilding"}},
)
def readyz(ports: PortsDep) -> JSONResponse:
    index = ports.index
    if ports.chat_model_loaded():
        model = "loaded"
    else:
        model = "loading" if ports.settings.eager_load else "lazy"
    body = Health(
        status="ready" if ports.ready else "not_ready",
        index=str(index.state),
        vectors=index.cache.count() if index.ready else None,
        model=model,
    )
    return JSONResponse(body.model_dump(), status_code=200 if ports.ready else 503)
