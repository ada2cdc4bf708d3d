"""The app factory. Ports are built once in the lifespan; the vector index loads in the
background while /readyz answers 503."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from personalization.backends import ModelBackend
from personalization.embedder import Embedder
from service.errors import AnswerUnexpected, install_error_handlers
from service.limits import BodySizeLimit
from service.logs import adopt_server_loggers, configure_logging
from service.observe import RequestObservation
from service.ports import build_ports
from service.routes import (
    capture,
    chat,
    context,
    edits,
    examples,
    health,
    instructions,
    metrics,
    privacy,
    sessions,
    tenants,
    turns,
    ui,
    users,
)
from service.routes.docs import install_docs
from service.schemas import ErrorResponse
from service.settings import Settings
from service.strict_query import reject_unknown_query

COMMON_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in [
        (400, "the body is not decodable (e.g. invalid UTF-8)"),
        (401, "missing, unknown, revoked or expired API key"),
        (403, "the key may not do this (e.g. a user-bound key on a tenant route)"),
        (404, "no such object in the caller's scope"),
        (413, "request body too large"),
        (422, "the request does not match the schema"),
        (429, "too busy: retry after Retry-After seconds"),
        (503, "not ready yet, or the model is unavailable"),
    ]
}

DESCRIPTION = """
Tailor keeps a profile for each end user of your app and returns, on every chat turn,
the part of it that applies, composed as a marked data block for the model's context.

Authenticate with `Authorization: Bearer <API key>`. Create a tenant and its first key
with `tailor bootstrap --name <app>` (or `POST /v1/tenants` with the admin token).
Errors always have the shape `{"error": {"code": ..., "message": ...}}`.
"""


def create_app(
    settings: Settings | None = None,
    *,
    embedder: Embedder | None = None,
    backend: ModelBackend | None = None,
) -> FastAPI:
    settings = settings or Settings()
    configure_logging(settings.log_level, settings.log_format)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        adopt_server_loggers(settings.log_format)
        ports = build_ports(settings, embedder, backend)
        app.state.ports = ports
        ports.start()
        try:
            yield
        finally:
            ports.stop()

    app = FastAPI(
        title="Tailor",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        dependencies=[Depends(reject_unknown_query)],
        docs_url=None,
        redoc_url=None,
    )
    install_error_handlers(app)
    app.include_router(health.router)
    if settings.metrics_enabled:
        app.include_router(metrics.router)
    # /context, the hot path, first of the API: routing tries the included routers in
    # order, and coming eighth cost each turn 0.3 ms of event-loop CPU. Its path is
    # shaped like no other route's, so what matches where does not change (the docs
    # list its tag first).
    for router in (
        context.router,
        tenants.router,
        users.router,
        instructions.router,
        examples.router,
        edits.router,
        chat.router,
        privacy.router,
        sessions.router,
        turns.router,
        capture.router,
    ):
        app.include_router(router, responses=COMMON_ERRORS)
    app.include_router(ui.router)
    install_docs(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "If-Match",
                "Idempotency-Key",
                "X-Request-Id",
            ],
            expose_headers=["ETag", "Retry-After", "X-Tailor-Profile-Items", "X-Request-Id"],
            max_age=600,
        )
    app.add_middleware(AnswerUnexpected)  # a 500 never drops the connection
    app.add_middleware(RequestObservation)  # outermost: the request id is on that 500 too
    return app
