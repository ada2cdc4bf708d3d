"""A vector index that cannot load does not stay down: transient database errors are
retried with backoff, absurd snapshots are rebuilt, leftovers of a killed snapshot
write are removed, and a process that stays not-ready too long fails /healthz so an
orchestrator restarts it."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from store.changes import ChangeLogReader
from store.index_manager import IndexManager
from store.snapshot import MANIFEST
from tests.conftest import Api

TURN = "plan a trip"


def _fill(api: Api) -> dict[str, str]:
    h = api.tenant()
    api.user(h, "alice")
    api.instruction(h, "alice", text="Bullet points", applies_when="trip plan itinerary")
    return h


def _matched(api: Api, h: dict[str, str]) -> list[str]:
    return [i["text"] for i in api.context(h, "alice", TURN, threshold=0.3)["instructions"]]


def _index(api: Api) -> Any:
    return api.client.app.state.ports.index  # type: ignore[attr-defined]


FAST_RETRY = {"index_load_backoff_s": 0.05, "index_load_retries": 2}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("last_change_seq", 10**30),
        ("last_change_seq", -1),
        ("last_change_seq", True),
        ("last_change_seq", "12"),
        ("count", 10**30),
        ("dim", 10**30),
        ("format_version", 1.5),
    ],
)
def test_an_absurd_manifest_is_rebuilt_never_fatal(
    start_app: Any, tmp_path: Path, field: str, value: object
) -> None:
    first = start_app()
    h = _fill(first)
    first.client.__exit__(None, None, None)
    manifest = tmp_path / "data" / "index" / MANIFEST
    body = json.loads(manifest.read_text())
    body[field] = value
    manifest.write_text(json.dumps(body))
    second = start_app(**FAST_RETRY)
    assert _index(second).last_load.startswith("rebuilt")
    assert _matched(second, h) == ["Bullet points"]


def test_a_transient_database_error_at_start_is_retried(
    start_app: Any, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    first = start_app()
    h = _fill(first)
    first.client.__exit__(None, None, None)
    failures = {"left": 3}
    original = ChangeLogReader.last_seq

    def flaky(self: ChangeLogReader) -> int:
        if failures["left"]:
            failures["left"] -= 1
            raise sa.exc.OperationalError("select", {}, Exception("lock timeout"))
        return original(self)

    monkeypatch.setattr(ChangeLogReader, "last_seq", flaky)
    second = start_app(**FAST_RETRY)
    assert failures["left"] == 0
    assert "retrying" in caplog.text
    assert _index(second).ready
    assert _matched(second, h) == ["Bullet points"]


def test_a_process_not_ready_for_too_long_fails_its_liveness_check(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient

    from service.app import create_app
    from tests.conftest import make_settings
    from tests.fakes import HashingEmbedder, RecordingBackend

    def down(self: IndexManager) -> None:
        raise sa.exc.OperationalError("select", {}, Exception("database is down"))

    monkeypatch.setattr(IndexManager, "rebuild_all", down)
    settings = make_settings(
        tmp_path / "down",
        index_load_backoff_s=0.05,
        index_load_retries=1,
        unready_unhealthy_after_s=0.5,
    )
    app = create_app(settings, embedder=HashingEmbedder(), backend=RecordingBackend())
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200  # young: not ready is not dead
        deadline = time.monotonic() + 10
        while client.get("/healthz").status_code == 200:
            assert time.monotonic() < deadline, "healthz never failed"
            time.sleep(0.05)
        health = client.get("/healthz")
        assert health.status_code == 503
        assert health.json()["status"] == "unhealthy"
        assert client.get("/readyz").status_code == 503


def test_leftovers_of_a_killed_snapshot_write_are_removed_at_start(
    start_app: Any, tmp_path: Path
) -> None:
    first = start_app()
    h = _fill(first)
    first.client.__exit__(None, None, None)
    folder = tmp_path / "data" / "index"
    data = next(folder.glob("seg-*.bin"))
    leftovers = [
        folder / f".{data.name}.0a1b2c3d.tmp",
        folder / ".manifest.json.0a1b2c3d.tmp",
        folder / "seg-7-0a1b2c3d.bin",  # written, but the manifest never named it
    ]
    for path in leftovers:
        path.write_bytes(data.read_bytes())
    second = start_app()
    assert _index(second).last_load == "snapshot"
    assert not [p for p in leftovers if p.exists()]
    assert _matched(second, h) == ["Bullet points"]
