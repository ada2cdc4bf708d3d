"""A large block may be scanned by several threads (`TAILOR_SCAN_THREADS`,
store/block_ranking.py): every vector's score must be the same bits wherever the split
falls, as it is wherever the vector sits in its block, so replicas rank alike."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from service.settings import Settings
from service.threads import available_cores, thread_counts
from store.block_ranking import MIN_SPLIT_VECTORS, SCAN, inner_products, set_scan_threads
from store.instructions import COLLECTION, ROLE_TEXT
from store.vector_index import RowScores, VectorCache

DIM = 384


@pytest.fixture
def restore_threads() -> Iterator[None]:
    yield
    set_scan_threads(1)


def block(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors, vectors[int(rng.integers(n))] + np.float32(0.01)


@pytest.mark.parametrize("parts", [2, 3, 4, 7])
def test_a_split_scan_gives_every_vector_the_bits_of_a_whole_scan(
    parts: int, restore_threads: None
) -> None:
    vectors, query = block(MIN_SPLIT_VECTORS + 1237, parts)
    whole = np.einsum("ij,j->i", vectors, query)
    set_scan_threads(parts)
    assert SCAN.parts == parts and SCAN.pool is not None
    split = inner_products(vectors, query)
    assert split.dtype == whole.dtype
    assert split.tobytes() == whole.tobytes()
    # Any slice (another layout of the block) scores its rows alike too.
    for start in (1, 333, MIN_SPLIT_VECTORS // 3 + 7):
        part = inner_products(vectors[start:], query)
        assert part.tobytes() == whole[start:].tobytes()


def test_small_blocks_are_scanned_on_the_calling_thread(restore_threads: None) -> None:
    set_scan_threads(4)
    vectors, query = block(100, 1)
    assert (
        inner_products(vectors, query).tobytes() == np.einsum("ij,j->i", vectors, query).tobytes()
    )


def test_a_ranking_is_the_same_with_scan_threads(restore_threads: None) -> None:
    vectors, query = block(MIN_SPLIT_VECTORS + 500, 9)
    cache, user = VectorCache(DIM), uuid.uuid4()
    for i in range(0, len(vectors), 2):  # two keys per row
        cache.put(user, COLLECTION, uuid.uuid4(), [(ROLE_TEXT, vectors[i]), (1, vectors[i + 1])])

    def by_score(rows: RowScores) -> np.ndarray:
        return rows.best.astype(np.float64)

    one = cache.ranking(user, COLLECTION, query, by_score)
    set_scan_threads(3)
    three = cache.ranking(user, COLLECTION, query, by_score)
    assert one is not None and three is not None
    assert one.ranks.tobytes() == three.ranks.tobytes()
    assert one.top(20) == three.top(20)


def test_a_rows_best_key_is_the_maximum_over_its_vectors() -> None:
    """Rows of one to seven keys, some removed: the best per row by levels equals a
    per-row maximum (what `maximum.reduceat` gave before), bit for bit."""
    rng = np.random.default_rng(4)
    cache, user = VectorCache(16), uuid.uuid4()
    rows = [uuid.uuid4() for _ in range(3000)]
    for row_id in rows:
        keys = int(rng.choice([1, 1, 2, 3, 7]))
        vectors = rng.normal(size=(keys, 16)).astype(np.float32)
        cache.put(user, COLLECTION, row_id, [(ROLE_TEXT, v) for v in vectors])
    for row_id in rows[::7]:
        cache.remove(user, COLLECTION, row_id)
    query = rng.normal(size=16).astype(np.float32)

    def by_score(scores: RowScores) -> np.ndarray:
        return scores.best.astype(np.float64)

    ranking = cache.ranking(user, COLLECTION, query, by_score)
    assert ranking is not None
    index = cache._indexes[(user, COLLECTION)]
    size, first = index.size, index.first[: len(index.row_ids)]
    per_vector = np.einsum("ij,j->i", index.vectors[:size], query)
    want = np.maximum.reduceat(per_vector, first).astype(np.float64)
    want[~index.alive[: len(first)]] = -np.inf
    assert ranking.ranks.tobytes() == want.tobytes()
    assert int(np.isfinite(ranking.ranks).sum()) == len(rows) - len(rows[::7])


def test_a_rankings_per_key_cosines_are_a_slices_scan() -> None:
    """The ranking reads a row's per-key cosines back from its scan of the block; they
    are the bits a scan of the row's own vectors gives (search_rows computes those)."""
    rng = np.random.default_rng(6)
    cache, user = VectorCache(16), uuid.uuid4()
    for _ in range(500):
        keys = int(rng.integers(1, 5))
        vectors = rng.normal(size=(keys, 16)).astype(np.float32)
        cache.put(user, COLLECTION, uuid.uuid4(), [(i % 3, v) for i, v in enumerate(vectors)])
    query = rng.normal(size=16).astype(np.float32)

    def by_score(scores: RowScores) -> np.ndarray:
        return scores.best.astype(np.float64)

    ranking = cache.ranking(user, COLLECTION, query, by_score)
    assert ranking is not None
    top, _ = ranking.top(500)
    found = cache.search_rows(user, COLLECTION, query, None).rows
    for row in ranking.rows(top):
        assert (
            np.array(list(row.roles.values()), dtype=np.float32).tobytes()
            == np.array(list(found[row.row_id].values()), dtype=np.float32).tobytes()
        )
        assert list(row.roles) == list(found[row.row_id])


def test_the_setting_reaches_the_thread_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    assert thread_counts(Settings(data_dir=Path("unused"))).scan == min(available_cores(), 2)
    monkeypatch.setenv("TAILOR_SCAN_THREADS", "2")
    assert thread_counts(Settings(data_dir=Path("unused"))).scan == 2
    monkeypatch.setenv("TAILOR_SCAN_THREADS", "0")
    with pytest.raises(ValueError):
        Settings(data_dir=Path("unused"))
