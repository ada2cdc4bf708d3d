"""Schemathesis against Tailor's own OpenAPI schema, over real HTTP: generated requests
for every operation (valid and invalid), none may produce a server error or a response
that violates the documented schema. Run with more cases via TAILOR_FUZZ_CASES.

One check is left out: "schema-valid data must be accepted". Profile text is
deliberately stricter than JSON Schema can say (zero-width, bidi and control
characters are refused, see personalization/text.py), so that heuristic would flag
the rule itself."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from service.app import create_app
from tests.conftest import ADMIN_TOKEN, make_settings
from tests.fakes import HashingEmbedder, RuleBackend
from tests.server_process import InThreadServer, free_port

CASES = int(os.environ.get("TAILOR_FUZZ_CASES", "150"))  # per operation


def _serve() -> tuple[str, dict[str, str]]:
    port = free_port()
    import tempfile

    data = Path(tempfile.mkdtemp(prefix="tailor-fuzz-"))
    app = create_app(
        make_settings(
            data, max_body_bytes=5_000_000, edit_retry_backoff_s=0.01, rate_limit_per_minute=0
        ),
        embedder=HashingEmbedder(),
        backend=RuleBackend(),
    )
    base = InThreadServer(app, port, log_level="critical").start(timeout=30)
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    key = httpx.post(f"{base}/v1/tenants", json={"name": "fuzz"}, headers=admin).json()["api_key"][
        "key"
    ]
    headers = {"Authorization": f"Bearer {key}"}
    httpx.post(f"{base}/v1/users", json={"id": "user-42"}, headers=headers).raise_for_status()
    return base, headers


BASE, HEADERS = _serve()
schema = schemathesis.openapi.from_url(f"{BASE}/openapi.json")
COUNTER = {"cases": 0}


@pytest.fixture(scope="module", autouse=True)
def report() -> Iterator[None]:
    yield
    print(f"\nschemathesis: {COUNTER['cases']} generated cases")


@schema.parametrize()
@settings(
    max_examples=CASES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_schema(case: schemathesis.Case) -> None:
    COUNTER["cases"] += 1
    response = case.call(headers=HEADERS)
    if response.status_code == 413:  # a refusal schemathesis does not count as one
        assert response.json()["error"]["code"] == "body_too_large"
        return
    case.validate_response(response, excluded_checks=[positive_data_acceptance])
