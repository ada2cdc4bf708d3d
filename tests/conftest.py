from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from personalization.backends import ModelBackend
from personalization.embedder import Embedder
from service.app import create_app
from service.settings import Settings
from tests.fakes import HashingEmbedder, RecordingBackend
from tests.postgres import PostgresServer

ADMIN_TOKEN = "test-admin-token-0123456789abcdef-0123"


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "admin_token": ADMIN_TOKEN,
        "snapshot_interval_s": 3600.0,
    }
    values.update(overrides)
    return Settings(**values)


def wait_ready(client: TestClient, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get("/readyz")
        if response.status_code == 200:
            body: dict[str, Any] = response.json()
            return body
        time.sleep(0.02)
    raise AssertionError(f"service not ready after {timeout}s: {response.json()}")


class Api:
    """A TestClient plus helpers that speak the API the way an app would."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    def tenant(self, name: str = "acme") -> dict[str, str]:
        response = self.client.post(
            "/v1/tenants", json={"name": name}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )
        assert response.status_code == 201, response.text
        return {"Authorization": f"Bearer {response.json()['api_key']['key']}"}

    def user(self, headers: dict[str, str], user_id: str) -> None:
        response = self.client.post("/v1/users", json={"id": user_id}, headers=headers)
        assert response.status_code == 201, response.text

    def instruction(self, headers: dict[str, str], user_id: str, **body: Any) -> dict[str, Any]:
        response = self.client.post(f"/v1/users/{user_id}/instructions", json=body, headers=headers)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    def context(self, headers: dict[str, str], user_id: str, text: str, **extra: Any) -> Any:
        response = self.client.post(
            f"/v1/users/{user_id}/context",
            json={"messages": [{"role": "user", "content": text}], **extra},
            headers=headers,
        )
        assert response.status_code == 200, response.text
        return response.json()


AppFactory = Callable[..., Iterator[Api]]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str | None:
    """Every test that starts the app runs on SQLite and on a real PostgreSQL."""
    if request.param == "sqlite":
        return None
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.new_database()


@pytest.fixture
def start_app(tmp_path: Path, database_url: str | None) -> Iterator[Callable[..., Any]]:
    """Start (and on exit stop) an app on a data folder and database; call again to
    restart it on the same ones."""
    clients: list[TestClient] = []

    def start(
        embedder: Embedder | None = None,
        data_dir: Path | None = None,
        backend: ModelBackend | str | None = None,
        **overrides: Any,
    ) -> Api:
        """`backend="default"` builds the configured one (the embedded model)."""
        overrides.setdefault("database_url", database_url)
        settings = make_settings(data_dir or tmp_path / "data", **overrides)
        model = None if backend == "default" else backend or RecordingBackend()
        assert not isinstance(model, str)
        app = create_app(settings, embedder=embedder or HashingEmbedder(), backend=model)
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        wait_ready(client)
        return Api(client)

    yield start
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def api(start_app: Callable[..., Api]) -> Api:
    return start_app()
