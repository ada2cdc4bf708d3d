"""Snapshots as memory-mapped segments: a write puts only changed blocks on disk, a
restart maps them and answers exactly as a rebuild from SQL, a deleted user leaves the
files, and a damaged block is found before anything is served from it."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from store.segments import Segment
from store.snapshot import load_snapshot, read_snapshot, write_snapshot
from store.vector_index import Entry, VectorCache
from tests.conftest import Api
from tests.segment_files import array_offset

DIM = 8
TURNS = ["plan a trip to Rome", "a recipe for dinner", "explain python code", "hello"]


def _cache(users: list[uuid.UUID], rows: int = 5) -> VectorCache:
    cache = VectorCache(DIM)
    rng = np.random.default_rng(1)
    for user in users:
        vectors = rng.normal(size=(rows, DIM)).astype(np.float32)
        cache.load(Entry(user, "instruction", uuid.uuid4(), 0, v) for v in vectors)
    return cache


def _files(folder: Path) -> set[str]:
    return {p.name for p in folder.glob("seg-*.bin")}


def test_a_write_puts_only_changed_blocks_in_new_segments(tmp_path: Path) -> None:
    users = [uuid.uuid4() for _ in range(6)]
    cache = _cache(users)
    first = write_snapshot(tmp_path, cache.capture(), embedder_id="m", dim=DIM, last_change_seq=1)
    assert first.written_blocks == 6
    old_files = _files(tmp_path)
    old_bytes = {name: (tmp_path / name).read_bytes() for name in old_files}

    added = uuid.uuid4()
    cache.put(users[0], "instruction", added, [(0, np.ones(DIM, np.float32))])
    second = write_snapshot(
        tmp_path,
        cache.capture(),
        embedder_id="m",
        dim=DIM,
        last_change_seq=2,
        placed=first.placed,
    )
    assert second.written_blocks == 1  # only users[0]'s block was written again
    assert old_files < _files(tmp_path)  # the old segment stays, untouched
    assert all((tmp_path / n).read_bytes() == b for n, b in old_bytes.items())
    (kept,) = [s for s in second.segments if s.file in old_files]
    assert len(kept.dead) == 1
    entries = read_snapshot(tmp_path, embedder_id="m", dim=DIM)[1]
    assert sorted((e.user_id.bytes, e.row_id.bytes) for e in entries) == sorted(
        (e.user_id.bytes, e.row_id.bytes) for e in cache.entries()
    )

    third = write_snapshot(
        tmp_path,
        cache.capture(),
        embedder_id="m",
        dim=DIM,
        last_change_seq=3,
        placed=second.placed,
    )
    assert third.written_blocks == 0  # nothing changed: only a new manifest


def test_a_deleted_user_leaves_the_segment_files(tmp_path: Path) -> None:
    users = [uuid.uuid4() for _ in range(4)]
    cache = _cache(users)
    gone = cache.capture()[1]
    secret = np.asarray(gone.vectors[0]).tobytes()
    first = write_snapshot(tmp_path, cache.capture(), embedder_id="m", dim=DIM, last_change_seq=1)
    assert any(secret in (tmp_path / n).read_bytes() for n in _files(tmp_path))
    cache.drop_user(gone.user_id)
    write_snapshot(
        tmp_path,
        cache.capture(),
        embedder_id="m",
        dim=DIM,
        last_change_seq=2,
        placed=first.placed,
    )
    assert not any(secret in (tmp_path / n).read_bytes() for n in _files(tmp_path))
    held = {e.user_id for e in read_snapshot(tmp_path, embedder_id="m", dim=DIM)[1]}
    assert held == set(users) - {gone.user_id}


def test_a_mostly_dead_segment_is_compacted_with_its_digests(tmp_path: Path) -> None:
    users = [uuid.uuid4() for _ in range(4)]
    cache = _cache(users)
    placed = write_snapshot(
        tmp_path, cache.capture(), embedder_id="m", dim=DIM, last_change_seq=1
    ).placed
    for user in users[:3]:  # three of four blocks change: the old segment is mostly dead
        cache.put(user, "instruction", uuid.uuid4(), [(0, np.ones(DIM, np.float32))])
    manifest = write_snapshot(
        tmp_path, cache.capture(), embedder_id="m", dim=DIM, last_change_seq=2, placed=placed
    )
    assert len(manifest.segments) == 1 and not manifest.segments[0].dead
    loaded = load_snapshot(tmp_path, embedder_id="m", dim=DIM)
    assert all(loaded.verify(ref) for ref, _ in loaded.live_blocks())


def _stop(api: Api) -> None:
    api.client.__exit__(None, None, None)


def _index(api: Api) -> Any:
    return api.client.app.state.ports.index  # type: ignore[attr-defined]


def _fill(api: Api) -> dict[str, str]:
    h = api.tenant()
    for user in ("alice", "bob", "carol"):
        api.user(h, user)
        api.instruction(h, user, text=f"{user} avoids gluten", always_on=True)
        api.instruction(h, user, text="Bullet points", applies_when="trip plan itinerary")
        api.instruction(h, user, text="Metric units", applies_when="recipe cooking dinner")
        api.instruction(h, user, text="Type hints", applies_when="python code programming")
    return h


def _answers(api: Api, h: dict[str, str], users: tuple[str, ...]) -> list[Any]:
    return [
        [
            (i["id"], i["version"], i["reason"], i["score"])
            for i in api.context(h, u, t, whole_profile=False)["instructions"]
        ]
        for u in users
        for t in TURNS
    ]


def test_restart_writes_only_changed_users_and_keeps_their_new_rows(
    start_app: Any, tmp_path: Path
) -> None:
    folder = tmp_path / "data" / "index"
    first = start_app()
    h = _fill(first)
    _stop(first)

    second = start_app()
    assert _index(second).last_load == "snapshot"
    _index(second).follow()  # what the follower still refreshes (the first run's last
    _index(second).snapshot()  # changes) is written now, not counted below
    before = _files(folder)
    added = second.instruction(h, "alice", text="Km not miles", applies_when="trip plan itinerary")
    manifest = _index(second).snapshot()
    assert manifest is not None and manifest.written_blocks == 1  # alice's block only
    assert before < _files(folder)  # bob's and carol's blocks stay where they were
    expected = _answers(second, h, ("alice", "bob", "carol"))
    _stop(second)

    third = start_app()
    assert _index(third).last_load == "snapshot"
    assert any(added["id"] in [i[0] for i in turn] for turn in _answers(third, h, ("alice",)))
    assert _answers(third, h, ("alice", "bob", "carol")) == expected


def test_a_deleted_user_is_gone_after_a_restart(start_app: Any, tmp_path: Path) -> None:
    folder = tmp_path / "data" / "index"
    first = start_app()
    h = _fill(first)
    _stop(first)
    second = start_app()
    secrets = [
        e.vector.tobytes() for e in read_snapshot(folder, embedder_id="test/hashing-v1", dim=64)[1]
    ]
    assert second.client.delete("/v1/users/bob", headers=h).status_code == 204
    expected = _answers(second, h, ("alice", "carol"))
    _stop(second)
    held = read_snapshot(folder, embedder_id="test/hashing-v1", dim=64)[1]
    assert len({e.user_id for e in held}) == 2
    kept = {e.vector.tobytes() for e in held}
    gone = [v for v in secrets if v not in kept]
    assert gone  # bob's own vectors (not ones his rules share with alice's) left the files
    assert not any(v in (folder / n).read_bytes() for v in gone for n in _files(folder))

    third = start_app()
    assert _index(third).last_load == "snapshot"
    assert third.client.get("/v1/users/bob", headers=h).status_code == 404
    assert len(_index(third).cache.held_users()) == 2
    assert _answers(third, h, ("alice", "carol")) == expected


def test_a_mapped_start_searches_exactly_as_a_rebuild_from_sql(start_app: Any) -> None:
    first = start_app()
    _fill(first)
    _stop(first)
    second = start_app(index_verify_at_start_mb=0)
    index = _index(second)
    assert index.last_load == "snapshot"
    rng = np.random.default_rng(7)
    queries = rng.normal(size=(6, 64)).astype(np.float32)
    users = sorted(index.cache.held_users())
    assert len(users) == 3

    def results() -> list[Any]:
        return [
            [(h.row_id, h.role, h.score) for h in index.cache.search(u, c, q, k=None)]
            for u in users
            for c in ("instruction", "example")
            for q in queries
        ]

    mapped = results()
    index.rebuild_all()
    assert index.cache.held_users() == set(users)
    assert results() == mapped


def test_a_damaged_block_is_rebuilt_from_sql_never_served(
    start_app: Any, tmp_path: Path, caplog: Any
) -> None:
    first = start_app()
    h = _fill(first)
    before = _answers(first, h, ("alice", "bob", "carol"))
    _settle(first)
    _stop(first)
    (data,) = (tmp_path / "data" / "index").glob("seg-*.bin")
    raw = bytearray(data.read_bytes())
    raw[array_offset(bytes(raw), "vectors") + 5] ^= 0x40  # the first block's first vector
    data.write_bytes(bytes(raw))

    second = start_app(index_verify_at_start_mb=0)  # verified lazily: first use, background
    index = _index(second)
    assert index.last_load == "snapshot"
    assert _answers(second, h, ("alice", "bob", "carol")) == before
    assert index.checked.wait(30)
    assert index.corrupt_blocks == 1
    assert "failed their checksum" in caplog.text
    assert not index._unverified


def test_a_damaged_block_is_not_rewritten_under_a_new_digest(
    start_app: Any, tmp_path: Path
) -> None:
    """A write to a user whose mapped block is damaged and not verified yet copies the
    damaged vectors into memory; the next snapshot must not persist them as good."""
    folder = tmp_path / "data" / "index"
    first = start_app()
    h = _fill(first)
    _settle(first)  # the snapshot has seen every change: the restart replays nobody
    _stop(first)
    (data,) = folder.glob("seg-*.bin")
    raw = bytearray(data.read_bytes())
    segment = Segment(data, table_sha256=_table_sha(folder, data.name), size=len(raw), dim=64)
    vectors = array_offset(bytes(raw), "vectors")
    for b in range(segment.blocks):  # every block's first vector
        raw[vectors + int(segment.vecs[b]) * 64 * 4 + 5] ^= 0x40
    data.write_bytes(bytes(raw))

    second = start_app(index_verify_at_start_mb=0)
    second.instruction(h, "alice", text="Km not miles", applies_when="trip plan itinerary")
    _index(second).snapshot(force=True)
    ports = second.client.app.state.ports  # type: ignore[attr-defined]
    in_sql: dict[uuid.UUID, list[Any]] = {}
    for e in ports.instructions.entries(None, model="test/hashing-v1"):
        in_sql.setdefault(e.user_id, []).append((e.row_id.bytes, e.role, e.vector.tobytes()))
    loaded = load_snapshot(folder, embedder_id="test/hashing-v1", dim=64)
    good = 0
    for ref, block in loaded.live_blocks():  # a block with a good digest holds SQL's data
        if loaded.verify(ref):
            good += 1
            ends = [*block.first[1:].tolist(), len(block.vectors)]
            held = [
                (bytes(block.row_ids[r]), int(block.roles[v]), block.vectors[v].tobytes())
                for r, start in enumerate(block.first.tolist())
                for v in range(start, ends[r])
            ]
            assert sorted(held) == sorted(in_sql[block.user_id])
    assert good >= 1  # alice's block at least was written again
    assert _index(second).corrupt_blocks >= 1
    assert _index(second).checked.wait(30)
    _index(second).snapshot(force=True)
    everything = read_snapshot(folder, embedder_id="test/hashing-v1", dim=64)[1]
    assert sorted((e.row_id.bytes, e.role, e.vector.tobytes()) for e in everything) == sorted(
        row for rows in in_sql.values() for row in rows
    )
    assert _index(second).corrupt_blocks == 3


def _settle(api: Api) -> None:
    """Follow the change log to its end, then snapshot: a restart replays no user."""
    index = _index(api)
    index.follow()
    index.snapshot(force=True)
    assert index.cache.version == index._snapshot_version


def _table_sha(folder: Path, name: str) -> str:
    body = json.loads((folder / "manifest.json").read_text())
    return str(next(s["table_sha256"] for s in body["segments"] if s["file"] == name))
