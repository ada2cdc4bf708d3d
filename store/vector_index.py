"""The in-memory vector cache: one exact inner-product FAISS index per (user,
collection). Per-user exact search, never a shared approximate index with a user filter
(that loses recall and leaks). It is a cache of SQL and can always be rebuilt from it."""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import faiss
import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float32]


def encode_vector(vector: Vector) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def decode_vector(blob: bytes, dim: int) -> Vector:
    vector = np.frombuffer(blob, dtype="<f4")
    if vector.shape != (dim,):
        raise ValueError(f"stored vector has {vector.shape[0]} values, expected {dim}")
    return vector.astype(np.float32)


def row_digest(collection: str, row_id: uuid.UUID) -> int:
    """One row's share of a user's content digest. Rows are immutable (an edit writes a
    new row with a new id), so the set of row ids says which vectors a user has."""
    blob = hashlib.blake2b(collection.encode() + row_id.bytes, digest_size=16).digest()
    return int.from_bytes(blob, "little")


DIGEST_MOD = 1 << 128  # a user's digest: the sum of its rows' digests, order-free


@dataclass(frozen=True, slots=True)
class Entry:
    """One vector of one SQL row; a row may have several roles (text, condition)."""

    user_id: uuid.UUID
    collection: str
    row_id: uuid.UUID
    role: int
    vector: Vector


@dataclass(frozen=True, slots=True)
class Hit:
    row_id: uuid.UUID
    role: int
    score: float


@dataclass(frozen=True, slots=True)
class RowSearch:
    """Rows found by a top-k search: each row's best score per role. `bound` is the k-th
    vector score (every row not found scores at most this on every key), or None when
    the search covered all of the user's vectors."""

    rows: dict[uuid.UUID, dict[int, float]]
    bound: float | None


@dataclass
class _UserIndex:
    dim: int
    index: faiss.IndexIDMap2 = field(init=False)
    refs: dict[int, tuple[uuid.UUID, int]] = field(default_factory=dict)
    by_row: dict[uuid.UUID, list[int]] = field(default_factory=dict)
    next_id: int = 0

    def __post_init__(self) -> None:
        self.index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))

    def add(self, row_id: uuid.UUID, role: int, vector: Vector) -> None:
        faiss_id = self.next_id
        self.next_id += 1
        self.index.add_with_ids(vector.reshape(1, -1), np.array([faiss_id], dtype=np.int64))
        self.refs[faiss_id] = (row_id, role)
        self.by_row.setdefault(row_id, []).append(faiss_id)

    def add_many(self, refs: list[tuple[uuid.UUID, int]], vectors: Vector) -> None:
        """One FAISS call for many (row, role) vectors: a user's reload pays it once."""
        faiss_ids = np.arange(self.next_id, self.next_id + len(refs), dtype=np.int64)
        self.next_id += len(refs)
        self.index.add_with_ids(vectors, faiss_ids)
        for faiss_id, (row_id, role) in zip(faiss_ids.tolist(), refs, strict=True):
            self.refs[faiss_id] = (row_id, role)
            self.by_row.setdefault(row_id, []).append(faiss_id)

    def remove(self, row_id: uuid.UUID) -> None:
        ids = self.by_row.pop(row_id, [])
        if ids:
            self.index.remove_ids(np.array(ids, dtype=np.int64))  # type: ignore[arg-type]
            for faiss_id in ids:
                del self.refs[faiss_id]


class VectorCache:
    """Thread-safe; mutations and reads take one lock (FAISS indexes are not safe to
    mutate while searched). Exact flat search over a user's few thousand vectors costs
    microseconds, so one lock is not the bottleneck; the embedder is."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._lock = threading.RLock()
        self._indexes: dict[tuple[uuid.UUID, str], _UserIndex] = {}
        # Bumped by every mutation, so "changed since the last snapshot" is derived
        # from the cache itself instead of each writer having to say so.
        self.version = 0

    def _check(self, vector: Vector) -> Vector:
        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        if vector.shape[0] != self.dim:
            raise ValueError(f"vector has dimension {vector.shape[0]}, index has {self.dim}")
        return vector

    def put(
        self,
        user_id: uuid.UUID,
        collection: str,
        row_id: uuid.UUID,
        vectors: Iterable[tuple[int, Vector]],
    ) -> None:
        """Replace whatever the row had with these (role, vector) pairs."""
        checked = [(role, self._check(v)) for role, v in vectors]
        with self._lock:
            index = self._indexes.get((user_id, collection))
            if index is None:
                index = self._indexes[(user_id, collection)] = _UserIndex(self.dim)
            index.remove(row_id)
            for role, vector in checked:
                index.add(row_id, role, vector)
            self.version += 1

    def remove(self, user_id: uuid.UUID, collection: str, row_id: uuid.UUID) -> None:
        with self._lock:
            index = self._indexes.get((user_id, collection))
            if index is not None and row_id in index.by_row:
                index.remove(row_id)
                self.version += 1

    def drop_user(self, user_id: uuid.UUID) -> None:
        with self._lock:
            for key in [k for k in self._indexes if k[0] == user_id]:
                del self._indexes[key]
                self.version += 1

    def replace_users(self, user_ids: Iterable[uuid.UUID], entries: Iterable[Entry]) -> None:
        """Swap these users' indexes for ones built from `entries`, atomically."""
        fresh = VectorCache(self.dim)
        fresh.load(entries)
        with self._lock:
            for user_id in user_ids:
                self.drop_user(user_id)
            self._indexes.update(fresh._indexes)
            self.version += 1

    def load(self, entries: Iterable[Entry]) -> None:
        """Add entries; a row's roles may arrive as separate entries, so they are
        grouped first (a `put` per entry would keep only each row's last role)."""
        groups: dict[tuple[uuid.UUID, str], dict[uuid.UUID, list[tuple[int, Vector]]]] = {}
        for entry in entries:
            rows = groups.setdefault((entry.user_id, entry.collection), {})
            rows.setdefault(entry.row_id, []).append((entry.role, self._check(entry.vector)))
        with self._lock:
            for (user_id, collection), rows in groups.items():
                index = self._indexes.get((user_id, collection))
                if index is None:
                    index = self._indexes[(user_id, collection)] = _UserIndex(self.dim)
                for row_id in rows:
                    index.remove(row_id)
                refs = [(row_id, role) for row_id, pairs in rows.items() for role, _ in pairs]
                vectors = np.stack([v for pairs in rows.values() for _, v in pairs])
                index.add_many(refs, vectors)
            self.version += 1

    def clear(self) -> None:
        with self._lock:
            self._indexes.clear()
            self.version += 1

    def search(
        self, user_id: uuid.UUID, collection: str, query: Vector, k: int | None = None
    ) -> list[Hit]:
        """Exact top-k (all, when k is None) by inner product = cosine on unit vectors."""
        query = self._check(query).reshape(1, -1)
        with self._lock:
            index = self._indexes.get((user_id, collection))
            if index is None or index.index.ntotal == 0:
                return []
            limit = index.index.ntotal if k is None else min(k, index.index.ntotal)
            scores, ids = index.index.search(query, limit)
            return [
                Hit(row_id=index.refs[int(i)][0], role=index.refs[int(i)][1], score=float(s))
                for s, i in zip(scores[0], ids[0], strict=True)
                if i >= 0
            ]

    def search_rows(
        self, user_id: uuid.UUID, collection: str, query: Vector, k: int | None
    ) -> RowSearch:
        """The rows owning the top `k` vectors (all, when k is None), with the exact score
        of every vector of those rows (a row found by one key is scored on all its keys),
        and the k-th score: no row outside holds a vector above it. One FAISS search and
        a few reconstructs; never a Python object per vector of the profile."""
        query = self._check(query).reshape(1, -1)
        with self._lock:
            index = self._indexes.get((user_id, collection))
            if index is None or index.index.ntotal == 0:
                return RowSearch({}, None)
            total = index.index.ntotal
            limit = total if k is None else min(k, total)
            scores, ids = index.index.search(query, limit)
            found = {int(i): float(s) for s, i in zip(scores[0], ids[0], strict=True) if i >= 0}
            rows: dict[uuid.UUID, dict[int, float]] = {}
            for faiss_id in found:
                row_id = index.refs[faiss_id][0]
                if row_id in rows:
                    continue
                roles = rows[row_id] = {}
                for member in index.by_row[row_id]:
                    score = found.get(member)
                    if score is None:
                        vector = np.asarray(index.index.reconstruct(member), dtype=np.float32)
                        score = float(vector @ query[0])
                    role = index.refs[member][1]
                    roles[role] = max(score, roles.get(role, -np.inf))
            bound = None if limit == total else float(scores[0][limit - 1])
            return RowSearch(rows, bound)

    def user_rows(self, user_id: uuid.UUID, collection: str) -> int:
        """Distinct rows held for one user: how large a profile is, without SQL."""
        with self._lock:
            index = self._indexes.get((user_id, collection))
            return 0 if index is None else len(index.by_row)

    def holds_rows(self, user_id: uuid.UUID, collection: str, row_ids: Iterable[uuid.UUID]) -> int:
        with self._lock:
            index = self._indexes.get((user_id, collection))
            return 0 if index is None else sum(1 for r in row_ids if r in index.by_row)

    def entries(self) -> Iterator[Entry]:
        """Everything, for snapshots; the cache lock is held until the iteration ends."""
        with self._lock:
            for (user_id, collection), index in self._indexes.items():
                for faiss_id, (row_id, role) in index.refs.items():
                    vector = np.asarray(index.index.reconstruct(faiss_id), dtype=np.float32)
                    yield Entry(user_id, collection, row_id, role, vector)

    def count(self, collection: str | None = None) -> int:
        with self._lock:
            return sum(
                idx.index.ntotal
                for (_, coll), idx in self._indexes.items()
                if collection is None or coll == collection
            )

    def row_count(self, collection: str) -> int:
        """Distinct SQL rows mirrored for this collection, across all users."""
        with self._lock:
            return sum(
                len(idx.by_row) for (_, coll), idx in self._indexes.items() if coll == collection
            )

    def user_digests(self) -> dict[uuid.UUID, int]:
        """Per user, the digest of the (collection, row) pairs held; compared with the
        same digest over SQL's rows to find users whose vectors are not SQL's."""
        with self._lock:
            digests: dict[uuid.UUID, int] = {}
            for (user_id, collection), index in self._indexes.items():
                total = digests.get(user_id, 0)
                for row_id in index.by_row:
                    total = (total + row_digest(collection, row_id)) % DIGEST_MOD
                digests[user_id] = total
            return {user: digest for user, digest in digests.items() if digest}

    def has_user(self, user_id: uuid.UUID) -> bool:
        with self._lock:
            return any(uid == user_id and idx.refs for (uid, _), idx in self._indexes.items())
