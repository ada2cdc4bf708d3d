"""One node whose tailor.db is restored from an older backup while its snapshot folder
stays: the snapshot holds newer versions (other row ids, same row count), so only a
content check, not a count, sees that it no longer describes the database."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from service.app import create_app
from tests.conftest import Api, make_settings, wait_ready
from tests.fakes import HashingEmbedder, RecordingBackend

COUNT = 80


def _start(data: Path) -> Api:
    app = create_app(make_settings(data), embedder=HashingEmbedder(), backend=RecordingBackend())
    client = TestClient(app)
    client.__enter__()
    wait_ready(client)
    return Api(client)


def _matches(api: Api, h: dict[str, str], topic: str) -> list[tuple[str, int]]:
    body = api.context(h, "alice", topic, threshold=0.9)
    return [(i["id"], i["version"]) for i in body["instructions"]]


def test_a_restored_database_is_matched_again_despite_a_newer_snapshot(tmp_path: Path) -> None:
    data = tmp_path / "data"
    api = _start(data)
    h = api.tenant()
    api.user(h, "alice")
    ids = [
        api.instruction(h, "alice", text=f"rule {n}", applies_when=f"w{n:04d}a")["id"]
        for n in range(COUNT)
    ]
    api.client.__exit__(None, None, None)
    shutil.copy(data / "tailor.db", tmp_path / "backup.db")

    api = _start(data)
    for n, rule in enumerate(ids):
        changed = api.client.patch(
            f"/v1/users/alice/instructions/{rule}", json={"applies_when": f"z{n:04d}b"}, headers=h
        )
        assert changed.status_code == 200
    assert (ids[7], 2) in _matches(api, h, "z0007b")  # 64 hashed dims: collisions happen
    api.client.__exit__(None, None, None)  # the snapshot now holds the version-2 vectors

    for leftover in data.glob("tailor.db*"):
        leftover.unlink()
    shutil.copy(tmp_path / "backup.db", data / "tailor.db")
    api = _start(data)
    unmatched = [n for n in range(COUNT) if (ids[n], 1) not in _matches(api, h, f"w{n:04d}a")]
    assert unmatched == []
    index: Any = api.client.app.state.ports.index  # type: ignore[attr-defined]
    assert index.cache.count() == 2 * COUNT
    api.client.__exit__(None, None, None)
