"""Import is one transaction (any failure writes nothing, so a retry cannot duplicate),
bounded by the edit queue, and idempotent by the export's item ids. The edit-queue
bound holds under concurrent posts to two replicas of one database."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from store.errors import Overloaded
from tests.conftest import Api
from tests.fakes import HashingEmbedder, RuleBackend
from tests.test_cipher import LONG, SHORT
from tests.test_privacy import fill, wait_edits


def _export(api: Api, h: dict[str, str], user: str = "alice") -> dict[str, Any]:
    api.user(h, user)
    fill(api, h, user)
    export: dict[str, Any] = api.client.get(f"/v1/users/{user}/export", headers=h).json()
    return export


def _counts(api: Api, h: dict[str, str], user: str) -> dict[str, int]:
    c = api.client
    return {
        kind: c.get(f"/v1/users/{user}/{kind}", headers=h).json()["total"]
        for kind in ("instructions", "examples", "edits", "preferences")
    }


def _edit(n: int, status: str = "pending") -> dict[str, Any]:
    return {
        "id": f"00000000-0000-4000-8000-{n:012d}",
        "context": f"note number {n}",
        "draft": LONG,
        "edited": SHORT,
        "distance": 0.6,
        "inference_status": status,
    }


def test_importing_the_same_export_twice_adds_nothing_the_second_time(start_app: Any) -> None:
    api = start_app(backend=RuleBackend(), edit_retry_backoff_s=0.01)
    h = api.tenant()
    export = _export(api, h)
    api.user(h, "copy")
    first = api.client.post("/v1/users/copy/import", json=export, headers=h)
    assert first.status_code == 201, first.text
    assert first.json() == {
        "instructions": 3,
        "examples": 1,
        "edits": 1,
        "preferences": 1,
        "skipped": 0,
    }
    wait_edits(api, h, "copy")
    once = _counts(api, h, "copy")
    assert once == {"instructions": 3, "examples": 1, "edits": 1, "preferences": 1}

    again = api.client.post("/v1/users/copy/import", json=export, headers=h)
    assert again.status_code == 201, again.text
    assert again.json() == {
        "instructions": 0,
        "examples": 0,
        "edits": 0,
        "preferences": 0,
        "skipped": 5,
    }
    assert _counts(api, h, "copy") == once
    # ids are per target user: the same export still restores into another user
    api.user(h, "third")
    third = api.client.post("/v1/users/third/import", json=export, headers=h).json()
    assert third["instructions"] == 3
    assert third["skipped"] == 0


class FailingEmbedder(HashingEmbedder):
    """Refuses (like the admission gate under load) any batch that holds a marked text."""

    def embed(self, texts: Sequence[str]) -> np.ndarray[Any, np.dtype[np.float32]]:
        if any("refuse me" in t for t in texts):
            raise Overloaded("embedder busy (scripted)", code="embedder_busy")
        return super().embed(texts)


def test_a_failed_import_writes_nothing_and_can_be_retried(start_app: Any) -> None:
    api = start_app(embedder=FailingEmbedder(), backend=RuleBackend())
    h = api.tenant()
    api.user(h, "alice")
    doc: dict[str, Any] = {
        "format": "tailor-export-v1",
        "instructions": [
            {
                "instruction_id": f"00000000-0000-4000-8000-00000000000{n}",
                "version": 1,
                "text": f"Rule number {n}",
                "status": "active",
            }
            for n in range(3)
        ],
        "examples": [{"prompt": "refuse me", "chosen": "a", "rejected": "b"}],
    }
    failed = api.client.post("/v1/users/alice/import", json=doc, headers=h)
    assert failed.status_code == 429, failed.text
    assert _counts(api, h, "alice")["instructions"] == 0

    doc["examples"][0]["prompt"] = "a fine prompt"
    retried = api.client.post("/v1/users/alice/import", json=doc, headers=h)
    assert retried.status_code == 201, retried.text
    assert _counts(api, h, "alice")["instructions"] == 3


def test_imported_pending_edits_count_against_the_queue_bound(start_app: Any) -> None:
    api = start_app(
        backend=RuleBackend(fail_first=10**6), edit_queue_limit=5, edit_retry_backoff_s=3600
    )
    h = api.tenant()
    api.user(h, "alice")
    doc = {"format": "tailor-export-v1", "edits": [_edit(n) for n in range(6)]}
    too_many = api.client.post("/v1/users/alice/import", json=doc, headers=h)
    assert too_many.status_code == 422, too_many.text
    assert too_many.json()["error"]["code"] == "import_exceeds_edit_queue"
    assert "5" in too_many.json()["error"]["message"]
    assert _counts(api, h, "alice")["edits"] == 0

    # finished edits never queue: any number of them is fine
    done = {"format": "tailor-export-v1", "edits": [_edit(n, "failed") for n in range(6)]}
    assert api.client.post("/v1/users/alice/import", json=done, headers=h).status_code == 201

    api.client.post(
        "/v1/users/alice/edits",
        json={"context": "c", "draft": LONG, "edited": SHORT},
        headers=h,
    )
    four = {"format": "tailor-export-v1", "edits": [_edit(n) for n in range(10, 15)]}
    full = api.client.post("/v1/users/alice/import", json=four, headers=h)
    assert full.status_code == 429, full.text
    assert full.json()["error"]["code"] == "edit_queue_full"
    assert full.headers["retry-after"]
    assert _counts(api, h, "alice")["edits"] == 7
    four["edits"] = four["edits"][:4]
    assert api.client.post("/v1/users/alice/import", json=four, headers=h).status_code == 201
    assert _counts(api, h, "alice")["edits"] == 11


def test_the_queue_bound_holds_under_concurrent_posts_to_two_replicas(
    start_app: Any, database_url: str | None, tmp_path: Path
) -> None:
    url = database_url or f"sqlite:///{tmp_path / 'shared.db'}"
    settings = {
        "database_url": url,
        "edit_queue_limit": 50,
        "edit_retry_backoff_s": 3600,
        "rate_limit_per_minute": 0,
    }
    a = start_app(backend=RuleBackend(fail_first=10**6), data_dir=tmp_path / "a", **settings)
    b = start_app(backend=RuleBackend(fail_first=10**6), data_dir=tmp_path / "b", **settings)
    h = a.tenant()
    a.user(h, "alice")
    statuses: list[int] = []
    start = threading.Barrier(8)

    def post(api: Api, n: int) -> None:
        start.wait()
        for i in range(10):
            response = api.client.post(
                "/v1/users/alice/edits",
                json={"context": f"note {n}-{i}", "draft": LONG, "edited": SHORT},
                headers=h,
            )
            statuses.append(response.status_code)

    threads = [threading.Thread(target=post, args=(a if n % 2 else b, n)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(set(statuses)) == [202, 429]
    assert statuses.count(202) == 50
    assert statuses.count(429) == 30
    assert _counts(a, h, "alice")["edits"] == 50
