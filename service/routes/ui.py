"""The end user's profile page at /ui/: three static files from the package.

The page reads its session token from the URL fragment and talks to the JSON API with
it; nothing here knows who is looking. The CSP allows scripts, styles and requests to
this origin only and no inline code, so profile text that slipped through as markup
still could not run."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from store.errors import NotFound

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
_ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}

# Plain Starlette routes: outside the OpenAPI document, and outside the API's refusal of
# unknown query parameters (a link with ?utm_source=... must still open the page).
router = APIRouter()


@cache
def _asset(name: str) -> bytes:
    return (files("service") / "ui" / name).read_bytes()


def _serve(name: str) -> Response:
    return Response(_asset(name), media_type=_ASSETS[name], headers=SECURITY_HEADERS)


def ui_redirect(_request: Request) -> RedirectResponse:
    """The browser keeps the #fragment (the token) across this redirect."""
    return RedirectResponse("ui/", status_code=308)


def ui_page(_request: Request) -> Response:
    return _serve("index.html")


def ui_asset(request: Request) -> Response:
    name = str(request.path_params["name"])
    if name not in _ASSETS or name == "index.html":
        raise NotFound("no such page", code="not_found")
    return _serve(name)


router.add_route("/ui", ui_redirect, methods=["GET"], include_in_schema=False)
router.add_route("/ui/", ui_page, methods=["GET"], include_in_schema=False)
router.add_route("/ui/{name}", ui_asset, methods=["GET"], include_in_schema=False)
