from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from service.deps import IndexDep
from service.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="Liveness: the process answers")
def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    summary="Readiness: the vector index is loaded or rebuilt",
    responses={503: {"model": Health, "description": "still loading or rebuilding"}},
)
def readyz(index: IndexDep) -> JSONResponse:
    body = Health(
        status="ready" if index.ready else "not_ready",
        index=str(index.state),
        vectors=index.cache.count() if index.ready else None,
    )
    return JSONResponse(body.model_dump(), status_code=200 if index.ready else 503)
