from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pytest

from store.snapshot import (
    MANIFEST,
    SnapshotInvalid,
    SnapshotMissing,
    read_snapshot,
    read_snapshot_arrays,
    write_snapshot,
)
from store.vector_index import Entry, VectorCache, decode_vector, encode_vector


def unit(seed: int, dim: int = 8) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    return v / np.linalg.norm(v)


def test_vector_bytes_round_trip_and_dimension_check() -> None:
    v = unit(1)
    assert np.array_equal(decode_vector(encode_vector(v), 8), v)
    with pytest.raises(ValueError, match="expected 4"):
        decode_vector(encode_vector(v), 4)


def test_search_is_exact_and_per_user() -> None:
    cache = VectorCache(8)
    alice, bob = uuid.uuid4(), uuid.uuid4()
    rows = [uuid.uuid4() for _ in range(20)]
    for i, row in enumerate(rows):
        cache.put(alice, "instruction", row, [(0, unit(i))])
    cache.put(bob, "instruction", uuid.uuid4(), [(0, unit(3))])
    hits = cache.search(alice, "instruction", unit(3))
    assert len(hits) == 20
    assert hits[0].row_id == rows[3] and hits[0].score == pytest.approx(1.0, abs=1e-5)
    expected = sorted(range(20), key=lambda i: -float(unit(i) @ unit(3)))
    assert [h.row_id for h in hits] == [rows[i] for i in expected]
    assert all(h.row_id in rows for h in cache.search(alice, "instruction", unit(99), k=5))
    assert cache.search(uuid.uuid4(), "instruction", unit(3)) == []


def test_put_replaces_and_remove_drops_all_roles() -> None:
    cache = VectorCache(8)
    user, row = uuid.uuid4(), uuid.uuid4()
    cache.put(user, "instruction", row, [(0, unit(1)), (1, unit(2))])
    cache.put(user, "instruction", row, [(0, unit(5))])
    assert [(h.role, round(h.score, 4)) for h in cache.search(user, "instruction", unit(5))] == [
        (0, 1.0)
    ]
    cache.remove(user, "instruction", row)
    assert cache.count() == 0 and cache.row_count("instruction") == 0


def test_wrong_dimension_is_refused() -> None:
    with pytest.raises(ValueError, match="dimension 4"):
        VectorCache(8).put(uuid.uuid4(), "instruction", uuid.uuid4(), [(0, np.ones(4))])


def _entries() -> list[Entry]:
    users = [uuid.uuid4(), uuid.uuid4()]
    return [
        Entry(users[i % 2], "instruction" if i % 3 else "example", uuid.uuid4(), i % 2, unit(i))
        for i in range(10)
    ]


def test_snapshot_round_trip(tmp_path: Path) -> None:
    entries = _entries()
    write_snapshot(tmp_path, entries, embedder_id="m", dim=8, last_change_seq=42)
    manifest, loaded = read_snapshot(tmp_path, embedder_id="m", dim=8)
    assert manifest.last_change_seq == 42 and manifest.count == 10
    key = lambda e: (e.user_id, e.collection, e.row_id, e.role)  # noqa: E731
    assert sorted(map(key, loaded)) == sorted(map(key, entries))
    by_key = {key(e): e.vector for e in entries}
    assert all(np.array_equal(by_key[key(e)], e.vector) for e in loaded)
    # a second snapshot replaces the first data file
    write_snapshot(tmp_path, entries[:3], embedder_id="m", dim=8, last_change_seq=43)
    assert len(list(tmp_path.glob("seg-*.bin"))) == 1


def test_missing_snapshot_is_reported_as_missing(tmp_path: Path) -> None:
    with pytest.raises(SnapshotMissing):
        read_snapshot(tmp_path, embedder_id="m", dim=8)


@pytest.mark.parametrize("damage", ["flip", "truncate", "other_embedder", "other_dim", "manifest"])
def test_damaged_snapshot_is_rejected(tmp_path: Path, damage: str) -> None:
    write_snapshot(tmp_path, _entries(), embedder_id="m", dim=8, last_change_seq=1)
    data = next(tmp_path.glob("seg-*.bin"))
    embedder, dim = "m", 8
    if damage == "flip":
        raw = bytearray(data.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        data.write_bytes(bytes(raw))
    elif damage == "truncate":
        data.write_bytes(data.read_bytes()[:100])
    elif damage == "other_embedder":
        embedder = "another-model"
    elif damage == "other_dim":
        dim = 16
    else:
        (tmp_path / MANIFEST).write_text(json.dumps({"format_version": 1}))
    with pytest.raises(SnapshotInvalid) as info:
        read_snapshot(tmp_path, embedder_id=embedder, dim=dim)
    assert not isinstance(info.value, SnapshotMissing)


def test_load_keeps_every_role_of_a_row() -> None:
    """Snapshots and SQL rebuilds deliver a row's text and condition vectors as separate
    entries; both must survive."""
    user, row = uuid.uuid4(), uuid.uuid4()
    cache = VectorCache(8)
    cache.load(
        [Entry(user, "instruction", row, 0, unit(1)), Entry(user, "instruction", row, 1, unit(2))]
    )
    assert cache.count() == 2
    assert cache.row_count("instruction") == 1
    roles = {h.role: h.score for h in cache.search(user, "instruction", unit(1))}
    assert roles[0] == pytest.approx(1.0, abs=1e-5)
    assert set(roles) == {0, 1}


def test_snapshot_of_captured_blocks_round_trips_meta_and_skips_removed_rows(
    tmp_path: Path,
) -> None:
    """The service writes from `capture()` (views of the blocks), not from entries: the
    same vectors, roles and meta come back; removed rows do not; writes after the
    capture do not leak into it."""
    cache = VectorCache(8)
    alice, bob = uuid.uuid4(), uuid.uuid4()
    kept, gone = uuid.uuid4(), uuid.uuid4()
    cache.put(alice, "instruction", kept, [(0, unit(1)), (1, unit(2))], meta=5)
    cache.put(alice, "instruction", gone, [(0, unit(3))], meta=9)
    cache.put(bob, "example", uuid.uuid4(), [(0, unit(4))])
    cache.remove(alice, "instruction", gone)
    views = cache.capture()
    cache.put(alice, "instruction", uuid.uuid4(), [(0, unit(5))], meta=1)  # after capture
    cache.remove(alice, "instruction", kept)  # after capture: still in this snapshot
    write_snapshot(tmp_path, views, embedder_id="m", dim=8, last_change_seq=3, layout="L1")
    manifest, loaded = read_snapshot(tmp_path, embedder_id="m", dim=8, layout="L1")
    assert manifest.count == 3
    got = sorted((e.user_id == alice, e.collection, e.role, e.meta) for e in loaded)
    assert got == [
        (False, "example", 0, 0),
        (True, "instruction", 0, 5),
        (True, "instruction", 1, 5),
    ]
    vectors = {(e.row_id, e.role): e.vector for e in loaded}
    assert np.array_equal(vectors[(kept, 1)], unit(2))
    with pytest.raises(SnapshotInvalid, match="meta packed"):
        read_snapshot(tmp_path, embedder_id="m", dim=8, layout="another-domain-list")


def test_removing_most_rows_compacts_the_block_and_keeps_search_exact() -> None:
    cache = VectorCache(8)
    user = uuid.uuid4()
    rows = [uuid.uuid4() for _ in range(3000)]
    for i, row in enumerate(rows):
        cache.put(user, "instruction", row, [(0, unit(i))], meta=i)
    for row in rows[:2500]:
        cache.remove(user, "instruction", row)
    assert cache.count() == 500 and cache.user_rows(user, "instruction") == 500
    hits = cache.search(user, "instruction", unit(2999), k=3)
    expected = sorted(range(2500, 3000), key=lambda i: -float(unit(i) @ unit(2999)))[:3]
    assert [h.row_id for h in hits] == [rows[i] for i in expected]
    assert {e.meta for e in cache.entries()} == set(range(2500, 3000))


def test_loading_a_snapshot_as_arrays_equals_loading_its_entries(tmp_path: Path) -> None:
    """The service's start-up path groups the snapshot's arrays into blocks with numpy;
    it must hold what loading entry by entry holds, and search the same."""
    rng = np.random.default_rng(3)
    users = [uuid.uuid4() for _ in range(4)]
    entries = []
    for i in range(300):
        row = uuid.uuid4()
        user, collection = users[i % 4], ["instruction", "example"][i % 3 == 0]
        for role in range(1 + i % 3):
            v = rng.normal(size=8).astype(np.float32)
            entries.append(Entry(user, collection, row, role, v / np.linalg.norm(v), i % 5))
    rng.shuffle(entries)  # type: ignore[arg-type]
    write_snapshot(tmp_path, entries, embedder_id="m", dim=8, last_change_seq=1)
    _, arrays = read_snapshot_arrays(tmp_path, embedder_id="m", dim=8)
    fast, slow = VectorCache(8), VectorCache(8)
    fast.load_arrays(arrays)
    slow.load(entries)
    key = lambda e: (e.user_id, e.collection, e.row_id, e.role, e.meta, e.vector.tobytes())  # noqa: E731
    assert sorted(map(key, fast.entries())) == sorted(map(key, slow.entries()))
    assert fast.user_digests() == slow.user_digests()
    query = unit(77)
    for user in users:
        assert fast.search(user, "instruction", query, k=7) == slow.search(
            user, "instruction", query, k=7
        )
    # A loaded block still takes writes (it grows out of the shared array).
    row = uuid.uuid4()
    fast.put(users[0], "instruction", row, [(0, query)], meta=1)
    assert fast.search(users[0], "instruction", query, k=1)[0].row_id == row


def test_equal_scores_and_positions_in_the_block_do_not_change_the_answer() -> None:
    """Replicas (and a replica before and after a restart) hold a user's rows in
    different block positions: ties are ordered by row id, and a row's score does not
    depend on where it sits (found by the two-replica state machine)."""
    rng = np.random.default_rng(3)
    user = uuid.uuid4()
    twin = rng.standard_normal(8).astype(np.float32)
    twin /= np.linalg.norm(twin)
    others = [rng.standard_normal(8).astype(np.float32) for _ in range(37)]
    rows = [(uuid.uuid4(), twin) for _ in range(3)] + [
        (uuid.uuid4(), v / np.linalg.norm(v)) for v in others
    ]
    query = rng.standard_normal(8).astype(np.float32)
    answers = []
    for order in (rows, rows[::-1], rows[5:] + rows[:5]):
        cache = VectorCache(dim=8)
        for row_id, vector in order:
            cache.put(user, "examples", row_id, [(0, vector)])
        answers.append([(h.row_id, h.score) for h in cache.search(user, "examples", query, k=10)])
        answers.append([(h.row_id, h.score) for h in cache.search(user, "examples", twin, k=2)])
    assert all(a == answers[0] for a in answers[0::2])
    assert all(a == answers[1] for a in answers[1::2])
    tied = [row_id for row_id, _ in answers[1]]
    assert tied == sorted((r for r, _ in rows[:3]), key=lambda r: r.bytes)[:2]
