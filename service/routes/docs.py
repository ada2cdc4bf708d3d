"""/docs and /redoc with every asset served by Tailor itself, so the API reference
renders on a machine that cannot reach a CDN.

The Swagger UI and ReDoc bundles (with their licences) come from the pinned
`fastapi-standalone-docs` wheel, used only as a carrier of those files: its own
`StandaloneDocs` patches functions inside `fastapi.applications` for the whole
process, while FastAPI's page builders called with local URLs need no patch."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_PATH = "/docs-assets"
ASSETS_PACKAGE = "fastapi_standalone_docs"


def install_docs(app: FastAPI) -> None:
    """Call on an app made with docs_url=None and redoc_url=None."""
    app.mount(ASSETS_PATH, StaticFiles(packages=[(ASSETS_PACKAGE, "static")]), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    def swagger_ui(request: Request) -> HTMLResponse:
        root = str(request.scope.get("root_path", ""))
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_PATH}/swagger/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_PATH}/swagger/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_PATH}/fastapi/favicon.png",
        )

    def redoc(request: Request) -> HTMLResponse:
        root = str(request.scope.get("root_path", ""))
        return get_redoc_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_PATH}/redoc/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_PATH}/fastapi/favicon.png",
            with_google_fonts=False,
        )

    # Plain routes, as FastAPI adds its own docs pages: outside the schema and the API's
    # query-parameter check.
    app.add_route("/docs", swagger_ui, include_in_schema=False)
    app.add_route("/redoc", redoc, include_in_schema=False)
