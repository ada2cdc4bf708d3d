"""Tailor in this process, for `--in-process` runs and tests: the real app (routes,
store, index, worker) on a private data folder, driven over ASGI by the same client
as a remote service. Model and embedder are what TAILOR_* settings configure, unless
a caller hands its own (tests pass fakes)."""

from __future__ import annotations

import os
import secrets
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from evals.client import TailorClient
from personalization.backends import ModelBackend
from personalization.embedder import Embedder
from service.app import create_app
from service.settings import Settings


@contextmanager
def in_process_service(
    *,
    embedder: Embedder | None = None,
    backend: ModelBackend | None = None,
    data_dir: Path | None = None,
    ready_timeout_s: float = 300.0,
    **overrides: Any,
) -> Iterator[TailorClient]:
    admin = secrets.token_urlsafe(32)
    with tempfile.TemporaryDirectory(prefix="tailor-eval-") as scratch:
        values: dict[str, Any] = {
            "data_dir": data_dir or Path(scratch),
            "admin_token": admin,
            # One trusted caller: the evaluator should measure the model, not the limiter.
            "rate_limit_per_minute": 0,
        }
        if "TAILOR_LOG_LEVEL" not in os.environ:
            # an access line per call would bury the job's own output
            values["log_level"] = "WARNING"
        values.update(overrides)
        app = create_app(Settings(**values), embedder=embedder, backend=backend)
        with TestClient(app, raise_server_exceptions=False) as http:
            deadline = time.monotonic() + ready_timeout_s
            while http.get("/readyz").status_code != 200:
                if time.monotonic() > deadline:
                    raise TimeoutError("in-process Tailor did not become ready")
                time.sleep(0.05)
            created = http.post(
                "/v1/tenants",
                json={"name": "tailor-eval"},
                headers={"Authorization": f"Bearer {admin}"},
            )
            created.raise_for_status()
            http.headers["Authorization"] = f"Bearer {created.json()['api_key']['key']}"
            yield TailorClient(http)
