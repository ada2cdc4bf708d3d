"""TAILOR_WORKERS=2: `tailor serve` as a real process with two worker processes on one
port and one SQLite database. Every request on a fresh connection may land on either
worker; they must answer as one service: a write made through one is in every turn
after it, an edit replaces the old text everywhere, a revoked key is refused by both
within TAILOR_KEY_CACHE_TTL_S, and each worker keeps its own snapshot folder."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.server_process import free_port, serve, stop, wait_ready

ADMIN = "workers-admin-token-" + "x" * 20
TTL_S = 0.5
CALLS = 12  # fresh connections per check; the kernel spreads them over both workers


def _context_texts(base: str, key: str) -> list[list[str]]:
    texts = []
    for _ in range(CALLS):
        response = httpx.post(  # no client: a new connection each time
            f"{base}/v1/users/alice/context",
            json={"messages": [{"role": "user", "content": "what should I cook tonight?"}]},
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        texts.append([i["text"] for i in response.json()["instructions"]])
    return texts


def _all_ready(base: str) -> None:
    """/readyz from a run of fresh connections: a worker still loading answers 503."""
    deadline = time.monotonic() + 120
    streak = 0
    while streak < 2 * CALLS:
        assert time.monotonic() < deadline, "the workers did not all become ready"
        ok = httpx.get(f"{base}/readyz", timeout=5).status_code == 200
        streak = streak + 1 if ok else 0
        if not ok:
            time.sleep(0.2)


def test_two_workers_answer_as_one_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "TAILOR_WORKERS": "2",
        "TAILOR_EMBEDDER_FACTORY": "tests.fakes:HashingEmbedder",
        "TAILOR_ADMIN_TOKEN": ADMIN,
        "TAILOR_KEY_CACHE_TTL_S": str(TTL_S),
        "TAILOR_RATE_LIMIT_PER_MINUTE": "0",
        "TAILOR_LOG_LEVEL": "WARNING",
    }.items():
        monkeypatch.setenv(name, value)
    data = tmp_path / "data"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = serve(data, port)
    try:
        wait_ready(base, proc)
        _all_ready(base)
        created = httpx.post(
            f"{base}/v1/tenants",
            json={"name": "acme"},
            headers={"Authorization": f"Bearer {ADMIN}"},
        )
        assert created.status_code == 201, created.text
        key = created.json()["api_key"]["key"]
        h = {"Authorization": f"Bearer {key}"}
        assert httpx.post(f"{base}/v1/users", json={"id": "alice"}, headers=h).status_code == 201
        written = httpx.post(
            f"{base}/v1/users/alice/instructions",
            json={"text": "I avoid gluten.", "always_on": True},
            headers=h,
        )
        assert written.status_code == 201, written.text
        assert all(t == ["I avoid gluten."] for t in _context_texts(base, key))

        edited = httpx.patch(
            f"{base}/v1/users/alice/instructions/{written.json()['id']}",
            json={"text": "I avoid gluten and dairy."},
            headers=h,
        )
        assert edited.status_code == 200, edited.text
        assert all(t == ["I avoid gluten and dairy."] for t in _context_texts(base, key))

        extra = httpx.post(f"{base}/v1/keys", json={"name": "app"}, headers=h).json()
        assert all(t for t in _context_texts(base, extra["key"]))  # both workers hold it
        revoked = httpx.delete(f"{base}/v1/keys/{extra['id']}", headers=h)
        assert revoked.status_code == 204
        time.sleep(TTL_S * 1.2)
        for _ in range(CALLS):
            refused = httpx.post(
                f"{base}/v1/users/alice/context",
                json={"messages": [{"role": "user", "content": "hello"}]},
                headers={"Authorization": f"Bearer {extra['key']}"},
            )
            assert refused.status_code == 401
    finally:
        stop(proc)
    # Each worker wrote its own snapshot (on its first load): neither deleted the other's.
    assert (data / "index" / "manifest.json").is_file()
    assert (data / "index-1" / "manifest.json").is_file()
