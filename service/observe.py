"""The outermost middleware: a request id on every answer, one access log line and the
HTTP metrics per request.

It wraps `AnswerUnexpected`, so the 500 that one writes carries the request id and is
counted too. It never raises on its own account and never touches the body, so
keep-alive and streaming behave exactly as without it."""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.logs import request_id_var
from service.metrics import observe_request

log = logging.getLogger("tailor.access")

REQUEST_ID_HEADER = "X-Request-Id"
# What a caller's id may be: a UUID, a ULID, a trace id like "Root=1-5e1b-..."; bounded
# and free of anything that could break a log line or a header.
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:=+/@-]{1,128}")
UNMATCHED_ROUTE = "<unmatched>"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            return text if _VALID_REQUEST_ID.fullmatch(text) else None
    return None


def route_template(scope: Scope) -> str:
    """The matched route's path template (never the raw path: ids stay out of labels)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else UNMATCHED_ROUTE


class RequestObservation:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = incoming_request_id(scope) or uuid.uuid4().hex
        token = request_id_var.set(request_id)
        start = time.perf_counter()
        status = 500
        finished = False

        async def observing(message: Message) -> None:
            nonlocal status, finished
            if message["type"] == "http.response.start":
                status = int(message["status"])
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                finished = True
            await send(message)

        try:
            await self.app(scope, receive, observing)
        finally:
            seconds = time.perf_counter() - start
            method = str(scope.get("method", ""))
            method = method if method in _METHODS else "OTHER"  # no label per made-up verb
            route = route_template(scope)
            observe_request(method, route, status, seconds)
            log.info(
                "%s %s %d %.1f ms",
                method,
                route,
                status,
                seconds * 1000,
                extra={
                    "method": method,
                    "route": route,
                    "status": status,
                    "latency_ms": round(seconds * 1000, 3),
                    "request_id": request_id,
                    "aborted": None if finished else True,
                },
            )
            request_id_var.reset(token)
