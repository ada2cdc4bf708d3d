"""Fixture helpers for the browser tests: Tailor on a loopback port (uvicorn in a
thread, the real app and SQLite store, the hashing embedder and the rule-answering
backend) and headless Chromium from the Debian `chromium` package, driven by
Playwright with `executable_path`, so no browser is ever downloaded."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest

from service.app import create_app
from tests.conftest import ADMIN_TOKEN, make_settings
from tests.fakes import HashingEmbedder, RuleBackend
from tests.server_process import InThreadServer, free_port

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser")


def _missing(message: str) -> NoReturn:
    """Locally a missing browser skips the tests; in CI it fails them."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def chromium_path() -> str:
    path = os.environ.get("TAILOR_CHROMIUM") or next(
        (p for p in map(shutil.which, CHROMIUM_CANDIDATES) if p), None
    )
    if path is None:
        _missing("no chromium: `apt-get install chromium` (scripts/test.sh does it)")
    return path


class LiveServer:
    """The app served over real HTTP, plus a client that speaks its API as an app would."""

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        settings = make_settings(
            data_dir, public_url=self.base, rate_limit_per_minute=0, port=self.port
        )
        app = create_app(settings, embedder=HashingEmbedder(), backend=RuleBackend())
        self._server = InThreadServer(app, self.port)
        self.http = httpx.Client(base_url=self.base, timeout=30)

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop()
        self.http.close()

    def tenant(self, name: str = "browser-app") -> dict[str, str]:
        response = self.http.post(
            "/v1/tenants", json={"name": name}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )
        assert response.status_code == 201, response.text
        return {"Authorization": f"Bearer {response.json()['api_key']['key']}"}

    def call(
        self, method: str, path: str, headers: dict[str, str], body: Any = None, expect: int = 200
    ) -> Any:
        response = self.http.request(method, path, headers=headers, json=body)
        assert response.status_code == expect, (method, path, response.text)
        return response.json() if response.content else None

    def link(self, headers: dict[str, str], user: str) -> dict[str, Any]:
        created: dict[str, Any] = self.call(
            "POST", f"/v1/users/{user}/sessions", headers, expect=201
        )
        return created

    def suggestion_from_edit(self, headers: dict[str, str], user: str) -> dict[str, Any]:
        """Record an edit that shortens a draft and wait for the background inference:
        the rule backend names it "Prefers shorter text." (a real suggestion, by the
        real edit pipeline)."""
        edit = self.call(
            "POST",
            f"/v1/users/{user}/edits",
            headers,
            {
                "context": "Tell the team the meeting moved to Thursday.",
                "draft": "Dear team, I hope this finds you well. I wanted to let you all "
                "know that the meeting has been moved to Thursday afternoon.",
                "edited": "Meeting moved to Thursday.",
            },
            expect=202,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = self.call("GET", f"/v1/users/{user}/edits/{edit['id']}", headers)
            if state["inference_status"] in ("done", "failed", "skipped"):
                break
            time.sleep(0.05)
        assert state["inference_status"] == "done", state
        preference: dict[str, Any] = self.call(
            "GET", f"/v1/users/{user}/preferences/{state['preference_id']}", headers
        )
        return preference


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path_factory.mktemp("live") / "data")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    executable = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("no playwright: install the dev extras (`pip install -e '.[dev]'`)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable,
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
        )
        yield browser
        browser.close()


DESKTOP = {"width": 1280, "height": 900}


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    """A fresh desktop-sized page; any JavaScript error on it fails the test."""
    context = chromium.new_context(viewport=DESKTOP, accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert errors == [], errors


SCREENSHOT_DIR = Path(os.environ.get("TAILOR_SCREENSHOTS", "/tmp/tailor-ui-screenshots"))


def screenshot(page: Any, name: str, *, full_page: bool = True) -> Path:
    """PNGs for a person to look at (never committed); a modal dialog needs
    full_page=False, or its backdrop covers only the first screen of the picture."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOT_DIR / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path
