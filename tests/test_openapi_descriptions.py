"""Every operation in the OpenAPI document says more than its summary: what a user of
the API needs to know (behaviour, errors, bounds) is in its description."""

from __future__ import annotations

from pathlib import Path

from service.app import create_app
from tests.conftest import make_settings
from tests.fakes import HashingEmbedder


def test_every_operation_has_a_description(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path), embedder=HashingEmbedder())
    spec = app.openapi()
    operations = [
        (method.upper(), path, operation)
        for path, methods in spec["paths"].items()
        for method, operation in methods.items()
    ]
    assert len(operations) >= 30
    thin = [
        f"{method} {path}"
        for method, path, operation in operations
        if len(operation.get("description", "").strip()) < 40
        or operation.get("description", "").strip() == operation.get("summary", "").strip()
    ]
    assert thin == []
    unsummarised = [f"{m} {p}" for m, p, operation in operations if not operation.get("summary")]
    assert unsummarised == []
