"""The profile page's files and headers, the offline API docs, and CORS, over the real
app (the page's behaviour in a browser is in test_ui_browser.py)."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Api

UI_DIR = Path(__file__).resolve().parent.parent / "service" / "ui"


class _Refs(HTMLParser):
    """Every URL a page makes the browser load, and its inline scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts = 0
        self._in_script_without_src = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in ("src", "href"):
            url = values.get(name)
            if url and not url.startswith("#") and tag in ("script", "link", "img"):
                self.urls.append(url)
        self._in_script_without_src = tag == "script" and "src" not in values

    def handle_data(self, data: str) -> None:
        if self._in_script_without_src and data.strip():
            self.inline_scripts += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script_without_src = False


def _refs(html: str) -> _Refs:
    parser = _Refs()
    parser.feed(html)
    return parser


def test_profile_page_is_served_with_a_strict_policy(api: Api) -> None:
    c = api.client
    page = c.get("/ui/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp
    assert "script-src 'self';" in csp
    assert "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"
    refs = _refs(page.text)
    assert refs.inline_scripts == 0
    assert sorted(refs.urls) == ["app.css", "app.js"]
    for url in refs.urls:
        asset = c.get(f"/ui/{url}")
        assert asset.status_code == 200
        assert asset.headers["content-security-policy"] == csp
        assert len(asset.content) > 1000
    assert c.get("/ui/app.js").headers["content-type"].startswith("text/javascript")
    assert c.get("/ui/?utm_source=newsletter").status_code == 200
    missing = c.get("/ui/secrets.txt")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    redirect = c.get("/ui", follow_redirects=False)
    assert redirect.status_code == 308
    assert redirect.headers["location"] == "ui/"
    assert "/ui/" not in c.get("/openapi.json").json()["paths"]


def test_page_script_never_writes_markup() -> None:
    """Profile text reaches the page only through textContent: no HTML sinks at all."""
    script = (UI_DIR / "app.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script, sink
    assert "http://" not in script and "https://" not in script


@pytest.mark.parametrize(("path", "expected"), [("/docs", 3), ("/redoc", 2)])
def test_api_docs_load_only_local_assets(api: Api, path: str, expected: int) -> None:
    c = api.client
    page = c.get(path)
    assert page.status_code == 200
    assert "cdn" not in page.text.lower()
    assert "fonts.googleapis" not in page.text
    urls = _refs(page.text).urls
    assert len(urls) == expected, urls
    for url in urls:
        assert url.startswith("/docs-assets/"), url
        asset = c.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 1000, url
    assert "/openapi.json" in page.text
    assert c.get(f"{path}?lang=en").status_code == 200


def test_docs_assets_carry_their_licences(api: Api) -> None:
    swagger = api.client.get("/docs-assets/swagger/LICENSE")
    assert swagger.status_code == 200
    assert "Apache License" in swagger.text
    redoc = api.client.get("/docs-assets/redoc/redoc.standalone.js.LICENSE.txt")
    assert redoc.status_code == 200
    assert "ReDoc" in redoc.text


def _cors_app(start_app: Any) -> tuple[Api, dict[str, str]]:
    api: Api = start_app(cors_origins=["https://app.example", "http://localhost:3000"])
    h = api.tenant()
    api.user(h, "alice")
    api.instruction(h, "alice", text="I avoid gluten", always_on=True)
    token = api.client.post("/v1/users/alice/sessions", headers=h).json()["token"]
    return api, {"Authorization": f"Bearer {token}"}


def test_cors_preflight_for_an_allowed_origin(start_app: Any) -> None:
    api, _ = _cors_app(start_app)
    response = api.client.options(
        "/v1/users/alice/instructions/00000000-0000-0000-0000-000000000000",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": "authorization, content-type, if-match",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://app.example"
    assert "PATCH" in response.headers["access-control-allow-methods"]
    allowed = response.headers["access-control-allow-headers"].lower()
    for header in ("authorization", "content-type", "if-match", "idempotency-key"):
        assert header in allowed
    assert "access-control-allow-credentials" not in response.headers


def test_cors_allowed_origin_reads_with_a_session_token(start_app: Any) -> None:
    api, session = _cors_app(start_app)
    response = api.client.get(
        "/v1/users/alice/instructions",
        headers={**session, "Origin": "http://localhost:3000"},
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert [i["text"] for i in response.json()["items"]] == ["I avoid gluten"]
    denied = api.client.get("/v1/users/alice", headers={"Origin": "https://app.example"})
    assert denied.status_code == 401
    assert denied.headers["access-control-allow-origin"] == "https://app.example"


def test_cors_refuses_other_origins(start_app: Any) -> None:
    api, session = _cors_app(start_app)
    preflight = api.client.options(
        "/v1/users/alice/instructions",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert preflight.status_code == 400
    assert "access-control-allow-origin" not in preflight.headers
    simple = api.client.get(
        "/v1/users/alice/instructions", headers={**session, "Origin": "https://evil.example"}
    )
    assert "access-control-allow-origin" not in simple.headers


def test_no_cors_headers_by_default(api: Api) -> None:
    preflight = api.client.options(
        "/v1/users",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in preflight.headers
    plain = api.client.get("/healthz", headers={"Origin": "https://app.example"})
    assert "access-control-allow-origin" not in plain.headers


def test_cors_setting_refuses_a_wildcard_or_a_path() -> None:
    from pydantic import ValidationError

    from service.settings import Settings

    assert Settings(cors_origins="https://a.example, http://[::1]:8080").cors_origins == [
        "https://a.example",
        "http://[::1]:8080",
    ]
    for bad in ("*", "https://a.example/app", "a.example"):
        with pytest.raises(ValidationError):
            Settings(cors_origins=bad)
