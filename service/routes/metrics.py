"""GET /metrics: Prometheus text exposition (see service/metrics.py for what it holds)."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from fastapi.responses import Response

from service.deps import PortsDep
from service.metrics import CONTENT_TYPE, render
from store.errors import Unauthorized

router = APIRouter(tags=["health"])


def _authorized(request: Request, token: str) -> bool:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), token.encode())


@router.get(
    "/metrics",
    summary="Prometheus metrics of this replica",
    description=(
        "Prometheus text format. Per-process counters and histograms (requests by route "
        "template and status with latency, embedding passes and batch sizes, profile items "
        "and tokens per turn, model-backend latency and errors, model load times), then state "
        "read at scrape time: the edit queue's depth and oldest age from the database (the "
        "same on every replica), and this replica's index state and vector counts. No label "
        "holds a user id, a tenant id or profile text. Open like /healthz unless "
        "TAILOR_METRICS_TOKEN is set, then it needs `Authorization: Bearer <that token>` "
        "(401 otherwise); absent (404) with TAILOR_METRICS_ENABLED=false."
    ),
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE: {"schema": {"type": "string"}}}},
        401: {"description": "TAILOR_METRICS_TOKEN is set and was not sent"},
    },
)
def metrics(request: Request, ports: PortsDep) -> Response:
    token = ports.settings.metrics_token
    if token is not None and not _authorized(request, token.get_secret_value()):
        raise Unauthorized(
            "send Authorization: Bearer <TAILOR_METRICS_TOKEN>", code="invalid_metrics_token"
        )
    return Response(render(ports), media_type=CONTENT_TYPE)
