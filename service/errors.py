"""One table maps each domain error to one HTTP status. Every error body has the same
shape: {"error": {"code": machine-readable, "message": a sentence, "details"?: [...]}}.
No stack trace ever leaves the process."""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from personalization.backends import BackendFailed, BackendRejected, BackendUnavailable
from store.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    NotReady,
    Overloaded,
    PreconditionFailed,
    TailorError,
    Unauthorized,
)

log = logging.getLogger("tailor.http")

STATUS_FOR: dict[type[TailorError], int] = {
    NotFound: 404,
    Conflict: 409,
    Forbidden: 403,
    Unauthorized: 401,
    NotReady: 503,
    InvalidInput: 422,
    BackendUnavailable: 503,
    BackendRejected: 422,
    BackendFailed: 502,
    Overloaded: 429,
    PreconditionFailed: 412,
}

_HTTP_CODES = {
    400: "malformed_body",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    401: "invalid_api_key",
}


def error_body(
    code: str, message: str, details: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details
    return {"error": error}


def _status(exc: TailorError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS_FOR:
            return STATUS_FOR[cls]
    return 400


async def _tailor_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TailorError)
    status = _status(exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if status in (429, 503):
        headers = {"Retry-After": str(exc.retry_after or 2)}
    return JSONResponse(error_body(exc.code, exc.message), status_code=status, headers=headers)


def _not_json(request: Request) -> str | None:
    """The request's media type when its body was not declared JSON (curl's `-d` alone
    sends application/x-www-form-urlencoded); None when it was."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    ):
        return None
    return media or "none"


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    media = _not_json(request)
    if media is not None and any(
        tuple(err.get("loc", ()))[:1] == ("body",) for err in exc.errors()
    ):
        # FastAPI then reads the body as raw bytes, and the schema error ("Input should be
        # a valid dictionary") does not say what the caller did wrong.
        return JSONResponse(
            error_body(
                "json_content_type_required",
                f"the body must be JSON sent with Content-Type: application/json "
                f"(this request's Content-Type: {media})",
            ),
            status_code=422,
        )
    details = [
        {"loc": list(err.get("loc", ())), "msg": str(err.get("msg", "")), "type": err.get("type")}
        for err in exc.errors()
    ]
    return JSONResponse(
        error_body("invalid_request", "the request does not match the schema", details),
        status_code=422,
    )


def _allowed_methods(request: Request) -> str:
    """Starlette's 405 names only the first route that matched the path; a path served
    by several routes (GET and POST /v1/keys) must list them all. The documented paths
    are the source of truth."""
    patterns: list[tuple[re.Pattern[str], list[str]]] | None = getattr(
        request.app.state, "allow_patterns", None
    )
    if patterns is None:
        patterns = [
            (
                re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(path)) + "$"),
                [method.upper() for method in operations],
            )
            for path, operations in request.app.openapi()["paths"].items()
        ]
        request.app.state.allow_patterns = patterns
    methods = {
        m for pattern, allowed in patterns if pattern.match(request.url.path) for m in allowed
    }
    return ", ".join(sorted(methods))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = _allowed_methods(request)
    return JSONResponse(
        error_body(code, str(exc.detail)), status_code=exc.status_code, headers=headers
    )


class AnswerUnexpected:
    """Turns an exception nothing else handled into the documented 500, and ends it here.

    Starlette's own last-resort handler answers and then re-raises, so the server logs
    a traceback and closes the connection: a keep-alive client's next request is reset.
    Installed as the outermost middleware, this answers, logs once, and keeps the
    connection. Only when the response had already started (a stream that broke midway)
    does it re-raise: that connection cannot carry a clean answer any more."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except Exception as exc:
            log.error("unhandled error", exc_info=exc)
            if started:
                raise
            response = JSONResponse(
                error_body("internal_error", "the server failed to handle this request"),
                status_code=500,
            )
            await response(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    """Domain, validation and HTTP errors; anything else is `AnswerUnexpected`'s (added
    last in the app factory, so it wraps every other middleware)."""
    app.add_exception_handler(TailorError, _tailor_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
