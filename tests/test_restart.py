"""SQL is the truth, the FAISS index a cache: restarts give the same answers whether
the snapshot is fresh, stale (replayed from the change log) or damaged (rebuilt)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from store.snapshot import MANIFEST, read_snapshot
from tests.conftest import Api
from tests.segment_files import array_offset

TURNS = ["plan a trip to Rome", "a recipe for dinner", "explain python code", "hello"]


def _fill(api: Api) -> dict[str, str]:
    h = api.tenant()
    for user in ("alice", "bob"):
        api.user(h, user)
        api.instruction(h, user, text=f"{user} avoids gluten", always_on=True)
        api.instruction(h, user, text="Bullet points", applies_when="trip plan itinerary")
        api.instruction(h, user, text="Metric units", applies_when="recipe cooking dinner")
        api.instruction(h, user, text="Type hints", applies_when="python code programming")
    return h


def _answers(api: Api, h: dict[str, str]) -> list[Any]:
    out = []
    for user in ("alice", "bob"):
        for turn in TURNS:
            ctx = api.context(h, user, turn, whole_profile=False)  # what the index matched
            out.append(
                [(i["id"], i["version"], i["reason"], i["score"]) for i in ctx["instructions"]]
            )
    return out


def _index(api: Api) -> Any:
    return api.client.app.state.ports.index  # type: ignore[attr-defined]


def _stop(api: Api) -> None:
    api.client.__exit__(None, None, None)


def test_restart_loads_the_snapshot_and_answers_the_same(start_app: Any, tmp_path: Path) -> None:
    first = start_app()
    h = _fill(first)
    before = _answers(first, h)
    assert any(len(a) == 2 for a in before)  # conditional matches happen at all
    _stop(first)
    assert (tmp_path / "data" / "index" / MANIFEST).exists()

    second = start_app()
    assert _index(second).last_load == "snapshot"
    assert _answers(second, h) == before


def test_stale_snapshot_is_replayed_from_the_change_log(start_app: Any, tmp_path: Path) -> None:
    first = start_app()
    h = _fill(first)
    _stop(first)
    stale = tmp_path / "stale-index"
    shutil.copytree(tmp_path / "data" / "index", stale)

    second = start_app()
    c = second.client
    items = c.get("/v1/users/alice/instructions", headers=h).json()["items"]
    c.patch(
        f"/v1/users/alice/instructions/{items[1]['id']}", json={"applies_when": "zebra"}, headers=h
    )
    c.delete(f"/v1/users/alice/instructions/{items[2]['id']}", headers=h)
    second.instruction(h, "alice", text="Km not miles", applies_when="trip plan itinerary")
    c.delete("/v1/users/bob", headers=h)
    second.user(h, "carol")
    second.instruction(h, "carol", text="Carol likes haiku", always_on=True)
    expected = [
        second.context(h, u, t, whole_profile=False)["instructions"]
        for u in ("alice", "carol")
        for t in TURNS
    ]
    _stop(second)

    shutil.rmtree(tmp_path / "data" / "index")
    shutil.copytree(stale, tmp_path / "data" / "index")  # as if the last snapshot never ran
    third = start_app()
    assert _index(third).last_load == "snapshot"
    got = [
        third.context(h, u, t, whole_profile=False)["instructions"]
        for u in ("alice", "carol")
        for t in TURNS
    ]
    assert got == expected
    assert third.client.get("/v1/users/bob", headers=h).status_code == 404


def test_corrupt_snapshot_is_rebuilt_from_sql(start_app: Any, tmp_path: Path, caplog: Any) -> None:
    """A flipped byte in a segment's table (which says where every block lies) makes the
    whole snapshot untrusted; one in a block's vectors is tests/test_snapshot_segments.py."""
    first = start_app()
    h = _fill(first)
    before = _answers(first, h)
    _stop(first)
    data = next((tmp_path / "data" / "index").glob("seg-*.bin"))
    raw = bytearray(data.read_bytes())
    raw[array_offset(bytes(raw), "block_rows")] ^= 0x55
    data.write_bytes(bytes(raw))

    second = start_app()
    assert _index(second).last_load.startswith("rebuilt: segment seg-")
    assert "table checksum mismatch" in _index(second).last_load
    assert "vector snapshot rejected" in caplog.text
    assert _answers(second, h) == before
    _stop(second)  # the rebuilt index is snapshotted again on the way down
    third = start_app()
    assert _index(third).last_load == "snapshot"
    assert _answers(third, h) == before


def test_missing_data_file_and_truncated_manifest_rebuild(start_app: Any, tmp_path: Path) -> None:
    first = start_app()
    h = _fill(first)
    before = _answers(first, h)
    _stop(first)
    folder = tmp_path / "data" / "index"
    manifest = (folder / MANIFEST).read_bytes()
    (folder / MANIFEST).write_bytes(manifest[: len(manifest) // 2])
    second = start_app()
    assert _index(second).last_load.startswith("rebuilt: unreadable manifest")
    assert _answers(second, h) == before
    _stop(second)
    for data in folder.glob("seg-*.bin"):
        data.unlink()
    third = start_app()
    assert _index(third).last_load.startswith("rebuilt: segment seg-")
    assert "unreadable" in _index(third).last_load
    assert _answers(third, h) == before


def test_deleted_user_is_gone_from_the_snapshot_at_once(start_app: Any, tmp_path: Path) -> None:
    api = start_app()
    h = _fill(api)
    index = _index(api)
    index.snapshot(force=True)
    folder = tmp_path / "data" / "index"
    users_before = {
        e.user_id for e in read_snapshot(folder, embedder_id="test/hashing-v1", dim=64)[1]
    }
    assert len(users_before) == 2
    api.client.delete("/v1/users/bob", headers=h)
    entries = read_snapshot(folder, embedder_id="test/hashing-v1", dim=64)[1]
    assert len({e.user_id for e in entries}) == 1
    assert len(entries) == index.cache.count()
    assert len(list(folder.glob("seg-*.bin"))) == 1


def test_restart_keeps_text_and_condition_vectors(start_app: Any) -> None:
    first = start_app()
    _fill(first)
    vectors = _index(first).cache.count()
    assert vectors == 14  # 8 instructions, 6 with a condition
    _stop(first)
    second = start_app()
    assert _index(second).cache.count() == vectors
    _index(second).rebuild_all()
    assert _index(second).cache.count() == vectors


def test_deleting_a_user_leaves_no_rows_behind(start_app: Any) -> None:
    import sqlalchemy as sa

    api = start_app()
    h = _fill(api)
    ports = api.client.app.state.ports  # type: ignore[attr-defined]
    bob = ports.users.resolve(ports.keys.authenticate(h["Authorization"][7:]), "bob").user_id
    api.client.post("/v1/keys", json={"user_id": "bob"}, headers=h)

    def counts() -> dict[str, int]:
        with ports.engine.connect() as conn:
            return {
                table: conn.execute(
                    sa.text(f"select count(*) from {table} where {column} = :u"), {"u": bob.hex}
                ).scalar()
                for table, column in [
                    ("instruction", "user_id"),
                    ("api_key", "user_id"),
                    ("app_user", "id"),
                ]
            }

    assert counts() == {"instruction": 4, "api_key": 1, "app_user": 1}
    assert api.client.delete("/v1/users/bob", headers=h).status_code == 204
    assert counts() == {"instruction": 0, "api_key": 0, "app_user": 0}
    with ports.engine.connect() as conn:
        logged = conn.execute(
            sa.text("select action from change_log where user_id = :u"), {"u": bob.hex}
        ).all()
        assert [row[0] for row in logged] == ["deleted"]  # one id-only tombstone
    assert not ports.index.cache.has_user(bob)


def test_rebuild_replaces_the_bad_snapshot_at_once(start_app: Any, tmp_path: Path) -> None:
    first = start_app()
    _fill(first)
    _stop(first)
    folder = tmp_path / "data" / "index"
    data = next(folder.glob("seg-*.bin"))
    data.write_bytes(data.read_bytes()[:64])
    second = start_app()
    assert _index(second).last_load.startswith("rebuilt")
    _, entries = read_snapshot(folder, embedder_id="test/hashing-v1", dim=64)
    assert len(entries) == _index(second).cache.count() == 14


def test_snapshot_from_another_embedder_is_rebuilt(start_app: Any, caplog: Any) -> None:
    from tests.fakes import HashingEmbedder

    first = start_app()
    h = _fill(first)
    _stop(first)
    second = start_app(embedder=HashingEmbedder(model_id="test/another-model"))
    assert _index(second).last_load.startswith(
        "rebuilt: snapshot is for embedder 'test/hashing-v1'"
    )
    assert "vector snapshot rejected" in caplog.text
    # rows embedded by the old model are not mixed into the new model's space
    assert _index(second).cache.count() == 0
    assert second.context(h, "alice", "plan a trip")["instructions"][0]["reason"] == "always_on"


def test_not_ready_until_the_rebuild_finishes(
    start_app: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    import threading

    from fastapi.testclient import TestClient

    from service.app import create_app
    from store.index_manager import IndexManager
    from tests.conftest import make_settings
    from tests.fakes import HashingEmbedder, RecordingBackend

    first = start_app()
    h = _fill(first)
    _stop(first)
    (tmp_path / "data" / "index" / "manifest.json").unlink()
    release = threading.Event()
    original = IndexManager.rebuild_all

    def slow_rebuild(self: IndexManager) -> None:
        release.wait(10)
        original(self)

    monkeypatch.setattr(IndexManager, "rebuild_all", slow_rebuild)
    settings = make_settings(tmp_path / "data", database_url=_index_url(first))
    with TestClient(
        create_app(settings, embedder=HashingEmbedder(), backend=RecordingBackend())
    ) as c:
        ready = c.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["status"] == "not_ready"
        turn = c.post(
            "/v1/users/alice/context",
            json={"messages": [{"role": "user", "content": "hi"}]},
            headers=h,
        )
        assert turn.status_code == 503
        assert turn.json()["error"]["code"] == "not_ready"
        assert turn.headers["retry-after"]
        release.set()
        deadline = time.monotonic() + 10
        while c.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline
        assert (
            c.post(
                "/v1/users/alice/context",
                json={"messages": [{"role": "user", "content": "hi"}]},
                headers=h,
            ).status_code
            == 200
        )


def _index_url(api: Api) -> str | None:
    url: str | None = api.client.app.state.ports.settings.database_url  # type: ignore[attr-defined]
    return url
