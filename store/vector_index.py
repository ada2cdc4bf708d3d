"""The in-memory vector cache: one contiguous float32 block per (user, collection),
scored exactly (see inner_products). Per-user exact search, never a shared
approximate index with a user filter (that loses recall and leaks). It is a cache of
SQL and can always be rebuilt from it.

Why a block and not a FAISS index per user (the design before): selection ranks every
row of a large profile by its best key plus the row's domain and kind terms
(personalization/candidates.py), so it needs every vector's score, not a top k; a
block is what the snapshot writes and loads as one array, with no object per vector;
and a vector's score must not depend on the block around it, so every replica and
every load path ranks alike (FAISS's kernels and a BLAS matrix-vector product changed
the last bit with a row's position; see inner_products)."""

from __future__ import annotations

import hashlib
import itertools
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from store.block_ranking import BlockRanking, RankedRow, Vector, best_first, inner_products
from store.segments import BlockData

__all__ = ["BlockRanking", "RankedRow", "Vector", "inner_products"]


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


# Rows' fields held per block (`keep_row_fields`), at most: a turn asks for a few
# dozen rows, or thousands when a tight budget widens its selection (measured at 10k
# items: 2k-5k rows a turn for some queries, which a cap of 2048 made every turn read
# again); this bounds a large profile's memory to about 8 MB of short instructions.
MAX_HELD_FIELDS = 16384

DIGEST_MOD = 1 << 128  # a user's digest: the sum of its rows' digests, order-free


@dataclass(frozen=True, slots=True)
class Entry:
    """One vector of one SQL row; a row may have several roles (text, condition). `meta`
    packs what ranking needs of the row besides its vectors (see `pack_meta`)."""

    user_id: uuid.UUID
    collection: str
    row_id: uuid.UUID
    role: int
    vector: Vector
    meta: int = 0


META_ALWAYS_ON = 1
META_CONSTRAINT = 2
META_DOMAIN_SHIFT = 2  # domain i of the cache's domain order is bit 2 + i
MAX_DOMAINS = 60


def pack_meta(
    always_on: bool, constraint: bool, domains: Sequence[str], order: Sequence[str]
) -> int:
    """A row's flags and domains as one integer: domain `order[i]` is bit 2 + i. Domains
    outside the order are not packed; the order is fixed per process and recorded with
    every snapshot (`layout_id`), so a snapshot packed under another order is not used."""
    meta = (META_ALWAYS_ON if always_on else 0) | (META_CONSTRAINT if constraint else 0)
    for name in domains:
        if name in order:
            meta |= 1 << (META_DOMAIN_SHIFT + order.index(name))
    return meta


def layout_id(order: Sequence[str]) -> str:
    return hashlib.blake2b("\n".join(order).encode(), digest_size=8).hexdigest()


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


@dataclass(frozen=True, slots=True)
class RowScores:
    """Every live row of one user's block, scored against one query: its best cosine
    over its keys and its packed meta (arrays aligned by row)."""

    best: npt.NDArray[np.float32]
    metas: npt.NDArray[np.int64]  # the distinct meta values of the block
    meta_of: npt.NDArray[np.intp]  # per row, its meta's index in `metas`
    # Every vector's score (the block's order): a row's per-key cosines, read back
    # rather than computed again (the same bits: see inner_products).
    per_vector: npt.NDArray[np.float32] | None = None


Ranker = Callable[[RowScores], npt.NDArray[np.float64]]


@dataclass(frozen=True, slots=True)
class BlockView:
    """One block as it was at capture, for a snapshot written outside the lock. Views
    stay valid: a block only appends past `size` (or builds new arrays when it grows or
    compacts), so what they cover is never written again; `alive` is copied."""

    user_id: uuid.UUID
    collection: str
    row_ids: Sequence[uuid.UUID]  # the block's; only its first len(first) are this view's
    first: npt.NDArray[np.int64]
    meta: npt.NDArray[np.int64]
    alive: npt.NDArray[np.bool_]
    roles: npt.NDArray[np.int16]
    vectors: npt.NDArray[np.float32]
    generation: int = 0  # the block's generation at capture (0: unknown, always written)

    def live_rows(self) -> npt.NDArray[np.intp]:
        return np.flatnonzero(self.alive)

    def vector_owner(self) -> npt.NDArray[np.intp]:
        """Per vector, the index of its row."""
        counts = np.diff(np.append(self.first, len(self.vectors)))
        return np.repeat(np.arange(len(self.first)), counts)


# Every change to a block gives it a new generation, unique in the process: a snapshot
# keeps a block it wrote (or loaded) before where it is while the generation is the same.
_GENERATIONS = itertools.count(1)


def row_levels(
    first: npt.NDArray[np.int64], size: int
) -> list[tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]]:
    """Per level k >= 1, the rows with more than k vectors and where their k-th one is:
    a row's best key is its first vector's score raised level by level. Most rows have
    one to three keys, so this is a few gathers over the rows, where `reduceat` makes
    one call per row (about 4 times slower at 100k rows). Maximum is exact in any order."""
    counts = np.diff(np.append(first, size))
    levels = []
    rows = np.flatnonzero(counts > 1)
    k = 1
    while len(rows):
        levels.append((rows, (first[rows] + k).astype(np.intp)))
        k += 1
        rows = rows[counts[rows] > k]
    return levels


class _UserIndex:
    """One user's vectors of one collection in one contiguous float32 block; a row's
    vectors are consecutive, so a row's best key is a few gathers (`row_levels`). A removed
    row is marked dead and the block compacts once most of it is dead. Exact inner
    product by one matrix-vector product: at 100k vectors that is a few milliseconds,
    and the ranking that follows stays in numpy (no Python object per vector)."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.vectors = np.empty((0, dim), dtype=np.float32)
        self.roles = np.empty(0, dtype=np.int16)
        self.size = 0  # vectors used in the block
        self.row_ids: list[uuid.UUID] = []
        self.first = np.empty(0, dtype=np.int64)  # per row: its first vector
        self.meta = np.empty(0, dtype=np.int64)
        self.alive = np.empty(0, dtype=bool)
        self.by_row: dict[uuid.UUID, int] = {}
        self.live_vectors = 0
        self.dead_rows = 0  # rows marked dead (none: a turn skips the mask)
        # Rows share few meta values (flags and a domain or two): a turn ranks those
        # values once each and gathers, instead of unpacking bits per row.
        self._groups: tuple[npt.NDArray[np.int64], npt.NDArray[np.intp]] | None = None
        self._levels: list[tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]] | None = None
        # Per row, what it costs to render (-1: not known yet); filled by the turns that
        # fetch rows (block_ranking), shorter than the rows until then.
        self.cost = np.empty(0, dtype=np.int32)
        # Per row index, the row's fields as its SQL source reads them (candidates.py),
        # so a turn need not fetch its top rows again. Held only for a live row, and
        # dropped with it: every change to a row's fields (a new version, a delete, a
        # re-derivation in place) reaches the cache as that row's removal (item_refresh).
        self.fields: dict[int, object] = {}
        self.generation = next(_GENERATIONS)

    def costs(self, *, known: bool = True) -> npt.NDArray[np.int32]:
        """The rows' known costs, padded with -1 to every row (a copy); all -1 when the
        held ones are not `known` (computed by another cost function)."""
        rows = len(self.row_ids)
        known_costs = self.cost[:rows] if known else self.cost[:0]
        pad = np.full(rows - len(known_costs), -1, dtype=np.int32)
        return np.concatenate([known_costs, pad])

    def set_cost(self, index: int, cost: int) -> None:
        if index >= len(self.cost):
            grown = np.full(max(len(self.row_ids), 2 * len(self.cost), 16), -1, dtype=np.int32)
            grown[: len(self.cost)] = self.cost
            self.cost = grown
        self.cost[index] = cost

    @classmethod
    def of_rows(
        cls,
        dim: int,
        row_ids: list[uuid.UUID],
        first: npt.NDArray[np.int64],
        meta: npt.NDArray[np.int64],
        roles: npt.NDArray[np.int16],
        vectors: npt.NDArray[np.float32],
    ) -> _UserIndex:
        """A block from arrays already grouped by row (a snapshot's): no per-vector work."""
        index = cls(dim)
        index.vectors, index.roles, index.size = vectors, roles, len(vectors)
        index.row_ids, index.first, index.meta = row_ids, first, meta
        index.alive = np.ones(len(row_ids), dtype=bool)
        index.by_row = {row_id: i for i, row_id in enumerate(row_ids)}
        index.live_vectors = len(vectors)
        return index

    @property
    def ntotal(self) -> int:
        return self.live_vectors

    def _grow(self, rows: int, vectors: int) -> None:
        need = self.size + vectors
        if need > len(self.vectors):
            cap = max(need, 2 * len(self.vectors), 16)
            grown = np.empty((cap, self.dim), dtype=np.float32)
            grown[: self.size] = self.vectors[: self.size]
            roles = np.empty(cap, dtype=np.int16)
            roles[: self.size] = self.roles[: self.size]
            self.vectors, self.roles = grown, roles
        count = len(self.row_ids)
        if count + rows > len(self.first):
            cap = max(count + rows, 2 * len(self.first), 16)
            self.first = np.resize(self.first, cap)
            self.meta = np.resize(self.meta, cap)
            self.alive = np.resize(self.alive, cap)

    def add_many(self, rows: list[tuple[uuid.UUID, int, list[tuple[int, Vector]]]]) -> None:
        """Append rows (id, meta, [(role, vector)]); a row already held is replaced."""
        for row_id, _, _ in rows:
            self.remove(row_id)
        rows = [row for row in rows if row[2]]  # a row without vectors is not held
        total = sum(len(pairs) for _, _, pairs in rows)
        self._grow(len(rows), total)
        at = self.size
        for row_id, meta, pairs in rows:
            index = len(self.row_ids)
            self.row_ids.append(row_id)
            self.first[index] = at
            self.meta[index] = meta
            self.alive[index] = True
            self.by_row[row_id] = index
            for role, vector in pairs:
                self.vectors[at] = vector
                self.roles[at] = role
                at += 1
        self.size = at
        self.live_vectors += total
        self._groups = self._levels = None
        self.generation = next(_GENERATIONS)

    def _span(self, index: int) -> tuple[int, int]:
        end = int(self.first[index + 1]) if index + 1 < len(self.row_ids) else self.size
        return int(self.first[index]), end

    def remove(self, row_id: uuid.UUID) -> None:
        index = self.by_row.pop(row_id, None)
        if index is None:
            return
        self.alive[index] = False
        self.dead_rows += 1
        self.fields.pop(index, None)
        self.generation = next(_GENERATIONS)
        start, end = self._span(index)
        self.live_vectors -= end - start
        if self.size > 1024 and self.live_vectors < self.size // 2:
            self._compact()

    def _compact(self) -> None:
        kept = [(r, int(self.meta[i]), self.pairs(i)) for r, i in self.by_row.items()]
        fresh = _UserIndex(self.dim)
        fresh.add_many(kept)
        fresh.fields = {fresh.by_row[self.row_ids[i]]: f for i, f in self.fields.items()}
        self.__dict__.update(fresh.__dict__)

    def pairs(self, index: int) -> list[tuple[int, Vector]]:
        start, end = self._span(index)
        return [(int(self.roles[i]), self.vectors[i].copy()) for i in range(start, end)]

    def scores(self, query: Vector) -> RowScores:
        rows = len(self.row_ids)
        if self._groups is None:
            metas, meta_of = np.unique(self.meta[:rows], return_inverse=True)
            self._groups = (metas, meta_of.reshape(-1))
        metas, meta_of = self._groups
        if self.size == 0:
            return RowScores(np.empty(0, np.float32), metas, meta_of)
        per_vector = inner_products(self.vectors[: self.size], query)
        first = self.first[:rows]
        best = per_vector[first]
        if self._levels is None:
            self._levels = row_levels(first, self.size)
        for row, at in self._levels:
            best[row] = np.maximum(best[row], per_vector[at])
        if self.dead_rows:
            best[~self.alive[:rows]] = -np.inf
        return RowScores(best, metas, meta_of, per_vector)

    def roles_of(self, index: int, query: Vector) -> dict[int, float]:
        start, end = self._span(index)
        scores = inner_products(self.vectors[start:end], query)
        roles: dict[int, float] = {}
        for role, score in zip(self.roles[start:end].tolist(), scores.tolist(), strict=True):
            roles[role] = max(score, roles.get(role, -np.inf))
        return roles


class _MappedIndex(_UserIndex):
    """A block held as a mapped segment's arrays whose row ids become objects only when
    the block is first used: a start holds a million rows as bytes, not as a million
    UUIDs and a dict (seconds of work, hundreds of MB). Until then the block is as
    loaded, so a snapshot keeps it where it is and reads none of it."""

    def __init__(
        self,
        dim: int,
        row_bytes: npt.NDArray[np.uint8],
        first: npt.NDArray[np.int64],
        meta: npt.NDArray[np.int64],
        roles: npt.NDArray[np.int16],
        vectors: npt.NDArray[np.float32],
    ) -> None:
        super().__init__(dim)
        del self.row_ids, self.by_row  # built by __getattr__ on first use
        self.row_bytes = row_bytes
        self.vectors, self.roles, self.size = vectors, roles, len(vectors)
        self.first, self.meta = first, meta
        self.alive = np.ones(len(row_bytes), dtype=bool)
        self.live_vectors = len(vectors)

    @property
    def materialized(self) -> bool:
        return "row_ids" in self.__dict__

    def __getattr__(self, name: str) -> Any:
        if name not in ("row_ids", "by_row"):
            raise AttributeError(name)
        keys = np.ascontiguousarray(self.__dict__["row_bytes"]).view("V16").reshape(-1)
        ids = [uuid.UUID(bytes=b) for b in keys.tolist()]
        self.__dict__["row_ids"] = ids
        self.__dict__["by_row"] = {row_id: i for i, row_id in enumerate(ids)}
        return self.__dict__[name]


def _row_count(index: _UserIndex) -> int:
    """Rows in the block (dead ones included), without building a mapped block's ids."""
    if isinstance(index, _MappedIndex) and not index.materialized:
        return len(index.row_bytes)
    return len(index.row_ids)


class _RowIdsOf(Sequence[uuid.UUID]):
    """A mapped block's row ids for a snapshot view, from its (immutable) bytes and only
    if the snapshot reads them."""

    def __init__(self, row_bytes: npt.NDArray[np.uint8]) -> None:
        self._bytes = row_bytes

    def __len__(self) -> int:
        return len(self._bytes)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return uuid.UUID(bytes=bytes(self._bytes[i]))


def _view_row_ids(index: _UserIndex) -> Sequence[uuid.UUID]:
    """The list itself for a block in memory (a later compaction swaps in a new list,
    never changes this one), lazy ids for a mapped block not used yet."""
    if isinstance(index, _MappedIndex) and not index.materialized:
        return _RowIdsOf(index.row_bytes)
    return index.row_ids


class VectorCache:
    """Thread-safe; mutations and reads take one lock. Exact search over one user's
    block is one matrix-vector product, so one lock is not the bottleneck; the
    embedder is."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._lock = threading.RLock()
        self._indexes: dict[tuple[uuid.UUID, str], _UserIndex] = {}
        # Bumped by every mutation, so "changed since the last snapshot" is derived
        # from the cache itself instead of each writer having to say so.
        self.version = 0
        self._cost_key: object = None  # what the held costs were computed by

    def _check(self, vector: Vector) -> Vector:
        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        if vector.shape[0] != self.dim:
            raise ValueError(f"vector has dimension {vector.shape[0]}, index has {self.dim}")
        return vector

    def _index(self, user_id: uuid.UUID, collection: str) -> _UserIndex:
        index = self._indexes.get((user_id, collection))
        if index is None:
            index = self._indexes[(user_id, collection)] = _UserIndex(self.dim)
        return index

    def put(
        self,
        user_id: uuid.UUID,
        collection: str,
        row_id: uuid.UUID,
        vectors: Iterable[tuple[int, Vector]],
        meta: int = 0,
    ) -> None:
        """Replace whatever the row had with these (role, vector) pairs."""
        checked = [(role, self._check(v)) for role, v in vectors]
        with self._lock:
            index = self._index(user_id, collection)
            index.remove(row_id)
            if checked:
                index.add_many([(row_id, meta, checked)])
            self.version += 1

    def remove(self, user_id: uuid.UUID, collection: str, row_id: uuid.UUID) -> None:
        with self._lock:
            index = self._indexes.get((user_id, collection))
            if index is not None and row_id in index.by_row:
                index.remove(row_id)
                self.version += 1

    def replace_rows(
        self,
        user_id: uuid.UUID,
        collection: str,
        stale: Iterable[uuid.UUID],
        entries: Iterable[Entry],
    ) -> None:
        """Drop these rows of one user's block and add `entries` (rows grouped by row id,
        as `load` does), atomically: a turn sees the block before or after, never a row
        half replaced."""
        rows: dict[uuid.UUID, tuple[int, list[tuple[int, Vector]]]] = {}
        for entry in entries:
            held = rows.setdefault(entry.row_id, (entry.meta, []))
            held[1].append((entry.role, self._check(entry.vector)))
        with self._lock:
            index = self._index(user_id, collection)
            for row_id in stale:
                index.remove(row_id)
            index.add_many([(row_id, meta, pairs) for row_id, (meta, pairs) in rows.items()])
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
        groups: dict[tuple[uuid.UUID, str], dict[uuid.UUID, tuple[int, list[tuple[int, Vector]]]]]
        groups = {}
        for entry in entries:
            rows = groups.setdefault((entry.user_id, entry.collection), {})
            held = rows.setdefault(entry.row_id, (entry.meta, []))
            held[1].append((entry.role, self._check(entry.vector)))
        with self._lock:
            for (user_id, collection), rows in groups.items():
                self._index(user_id, collection).add_many(
                    [(row_id, meta, pairs) for row_id, (meta, pairs) in rows.items()]
                )
            self.version += 1

    def load_arrays(self, arrays: Mapping[str, npt.NDArray[Any]]) -> None:
        """Add a snapshot's arrays (users, rows, collections, collection_names, roles,
        vectors, meta) block by block with numpy grouping: a million vectors load in
        seconds, without an object per vector."""
        users, rows = arrays["users"], arrays["rows"]
        if len(users) == 0:
            return
        names = [str(n) for n in arrays["collection_names"]]
        user_keys, user_of = np.unique(
            np.ascontiguousarray(users).view("V16").reshape(-1), return_inverse=True
        )
        row_keys, row_of = np.unique(
            np.ascontiguousarray(rows).view("V16").reshape(-1), return_inverse=True
        )
        codes = arrays["collections"].astype(np.int64)
        order = np.lexsort((row_of.reshape(-1), codes, user_of.reshape(-1)))
        group = user_of.reshape(-1)[order] * (len(names) + 1) + codes[order]
        row_sorted = row_of.reshape(-1)[order]
        vectors = np.ascontiguousarray(arrays["vectors"][order], dtype=np.float32)
        roles = arrays["roles"][order].astype(np.int16)
        meta = arrays["meta"][order].astype(np.int64)
        cuts = np.flatnonzero(np.diff(group)) + 1
        starts, ends = np.append(0, cuts), np.append(cuts, len(order))
        with self._lock:
            for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
                new_row = np.flatnonzero(np.diff(row_sorted[start:end])) + 1
                first = np.append(0, new_row).astype(np.int64)
                row_ids = [uuid.UUID(bytes=bytes(b)) for b in row_keys[row_sorted[start + first]]]
                user = uuid.UUID(bytes=bytes(user_keys[user_of.reshape(-1)[order[start]]]))
                collection = names[int(codes[order[start]])]
                self._indexes[(user, collection)] = _UserIndex.of_rows(
                    self.dim,
                    row_ids,
                    first,
                    meta[start:end][first],
                    roles[start:end],
                    vectors[start:end],
                )
            self.version += 1

    def load_block(self, block: BlockData) -> int:
        """Hold a snapshot's block as its arrays, without copying them (a mapped
        segment's views: read-only, so a change to the block builds it anew in memory).
        Returns the block's generation. Replaces what the cache held for (user,
        collection)."""
        user_id, collection = block.user_id, block.collection
        index = _MappedIndex(
            self.dim, block.row_ids, block.first, block.meta, block.roles, block.vectors
        )
        with self._lock:
            self._indexes[(user_id, collection)] = index
            self.version += 1
        return index.generation

    def held_users(self) -> set[uuid.UUID]:
        with self._lock:
            return {user for (user, _), idx in self._indexes.items() if idx.live_vectors}

    def user_digests_unlocked(self) -> dict[uuid.UUID, int]:
        """`user_digests`, with the lock held per block only (a background check must
        not stall turns for a million rows), and a block still as loaded hashed from
        its bytes, not turned into objects."""
        with self._lock:
            keys = list(self._indexes)
        digests: dict[uuid.UUID, int] = {}
        for key in keys:
            with self._lock:
                index = self._indexes.get(key)
                if index is None or index.live_vectors == 0:
                    continue
                if isinstance(index, _MappedIndex) and not index.materialized:
                    ids = index.row_bytes
                    held = [bytes(b) for b in np.ascontiguousarray(ids).view("V16").reshape(-1)]
                else:
                    held = [row_id.bytes for row_id in index.by_row]
            prefix = key[1].encode()
            total = digests.get(key[0], 0)
            for raw in held:
                share = hashlib.blake2b(prefix + raw, digest_size=16).digest()
                total = (total + int.from_bytes(share, "little")) % DIGEST_MOD
            digests[key[0]] = total
        return {user: digest for user, digest in digests.items() if digest}

    def clear(self) -> None:
        with self._lock:
            self._indexes.clear()
            self.version += 1

    def search(
        self, user_id: uuid.UUID, collection: str, query: Vector, k: int | None = None
    ) -> list[Hit]:
        """Exact top-k vectors (all, when k is None) by inner product = cosine on unit
        vectors, best first."""
        query = self._check(query)
        with self._lock:
            index = self._indexes.get((user_id, collection))
            if index is None or index.ntotal == 0:
                return []
            scores = inner_products(index.vectors[: index.size], query)
            rows = len(index.row_ids)
            owner = np.repeat(np.arange(rows), np.diff(np.append(index.first[:rows], index.size)))
            scores[~index.alive[owner]] = -np.inf
            live = np.flatnonzero(np.isfinite(scores))
            limit = len(live) if k is None else min(k, len(live))
            row_ids, roles = index.row_ids, index.roles
            order = best_first(
                live,
                scores,
                limit,
                lambda i: (
                    row_ids[int(owner[i])].bytes + int(roles[i]).to_bytes(4, "big", signed=True)
                ),
            )
            return [Hit(row_ids[int(owner[i])], int(roles[i]), float(scores[i])) for i in order]

    def ranking(
        self,
        user_id: uuid.UUID,
        collection: str,
        query: Vector,
        ranker: Ranker,
        cost_key: object = None,
    ) -> BlockRanking | None:
        """Every row of the user's block ranked once (the ranker gives -inf to rows that
        cannot be chosen), with the rows' costs known under `cost_key` (see set_costs):
        one pass over the block under the lock, then questions about it without the
        lock (store/block_ranking.py)."""
        query = self._check(query)
        with self._lock:
            index = self._indexes.get((user_id, collection))
            if index is None or index.ntotal == 0:
                return None
            rows = len(index.row_ids)
            scores = index.scores(query)
            return BlockRanking(
                index.row_ids,
                index.first[:rows],
                index.roles[: index.size],
                index.vectors[: index.size],
                query,
                ranker(scores),
                index.costs(known=cost_key is not None and cost_key == self._cost_key),
                index.fields,
                scores.per_vector,
            )

    def _ranked_block(
        self, user_id: uuid.UUID, collection: str, ranking: BlockRanking
    ) -> _UserIndex | None:
        """The block `ranking` was taken from, if the cache still holds it as it was
        laid out then (no compaction or reload since: its row indexes still apply)."""
        index = self._indexes.get((user_id, collection))
        return index if index is not None and index.fields is ranking.block else None

    def row_fields(
        self, user_id: uuid.UUID, collection: str, ranking: BlockRanking, rows: Iterable[int]
    ) -> dict[int, object]:
        """The fields held for these rows of `ranking` (by row index): rows still live
        in the block, whose fields were read from SQL while they were (keep_row_fields).
        A row missing here is read from SQL."""
        with self._lock:
            index = self._ranked_block(user_id, collection, ranking)
            if index is None:
                return {}
            held = index.fields
            return {i: held[i] for i in rows if i in held}

    def keep_row_fields(
        self,
        user_id: uuid.UUID,
        collection: str,
        ranking: BlockRanking,
        fields: Mapping[int, object],
    ) -> None:
        """Hold rows' fields, read from SQL after `ranking` was taken, with the rows.
        A row removed since (a new version, a delete, a re-derivation: each replaces
        the row) is not held: its index is dead, and the row, if back, has another one.
        A row live throughout was not changed in SQL before the read without the
        cache hearing of it later (its removal drops what is kept here), so what is
        kept is never older than the row it is kept with."""
        with self._lock:
            index = self._ranked_block(user_id, collection, ranking)
            if index is None:
                return
            held = index.fields
            for at, value in fields.items():
                if not index.alive[at]:
                    continue
                if len(held) >= MAX_HELD_FIELDS:
                    held.clear()  # starts over with the rows turns ask for now
                held[at] = value

    def rank_rows(
        self, user_id: uuid.UUID, collection: str, query: Vector, ranker: Ranker, limit: int
    ) -> tuple[list[RankedRow], float]:
        """The `limit` rows the ranker puts highest, with every key's cosine, and the
        highest rank of the rows left out (-inf: none)."""
        ranking = self.ranking(user_id, collection, query, ranker)
        if ranking is None:
            return [], -np.inf
        top, rest = ranking.top(limit)
        return ranking.rows(top), rest

    def set_costs(
        self, user_id: uuid.UUID, collection: str, key: object, costs: Mapping[uuid.UUID, int]
    ) -> None:
        """Remember rows' costs under `key` (what computes them): a cost under another key
        is not this one's, so a new key forgets every cost held. Not a change of the
        cache's content (no version bump: snapshots do not hold costs)."""
        with self._lock:
            if key != self._cost_key:
                for held in self._indexes.values():
                    held.cost = np.empty(0, dtype=np.int32)
                self._cost_key = key
            index = self._indexes.get((user_id, collection))
            if index is None:
                return
            for row_id, cost in costs.items():
                at = index.by_row.get(row_id)
                if at is not None:
                    index.set_cost(at, cost)

    def search_rows(
        self, user_id: uuid.UUID, collection: str, query: Vector, k: int | None
    ) -> RowSearch:
        """The rows owning the top `k` vectors (all, when k is None), each scored on all
        its keys, and the k-th vector score: no row outside has a key above it."""
        hits = self.search(user_id, collection, query, k)
        with self._lock:
            index = self._indexes.get((user_id, collection))
            total = 0 if index is None else index.ntotal
            query = self._check(query)
            rows: dict[uuid.UUID, dict[int, float]] = {}
            for hit in hits:
                if hit.row_id not in rows and index is not None and hit.row_id in index.by_row:
                    rows[hit.row_id] = index.roles_of(index.by_row[hit.row_id], query)
        bound = None if k is None or len(hits) >= total or not hits else hits[-1].score
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

    def capture(self) -> list[BlockView]:
        """Every block as it is now, in O(blocks) under the lock: a snapshot encodes
        these views afterwards, so requests never wait for the encoding."""
        with self._lock:
            views = []
            for (user_id, collection), index in self._indexes.items():
                rows = _row_count(index)
                if index.live_vectors == 0:
                    continue
                views.append(
                    BlockView(
                        user_id,
                        collection,
                        _view_row_ids(index),
                        index.first[:rows],
                        index.meta[:rows],
                        index.alive[:rows].copy(),
                        index.roles[: index.size],
                        index.vectors[: index.size],
                        index.generation,
                    )
                )
            return views

    def entries(self) -> Iterator[Entry]:
        """Everything as objects (tests, small tools); the lock is held throughout."""
        with self._lock:
            for (user_id, collection), index in self._indexes.items():
                for row_id, i in index.by_row.items():
                    meta = int(index.meta[i])
                    for role, vector in index.pairs(i):
                        yield Entry(user_id, collection, row_id, role, vector, meta)

    def count(self, collection: str | None = None) -> int:
        with self._lock:
            return sum(
                idx.ntotal
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
            return any(uid == user_id and idx.by_row for (uid, _), idx in self._indexes.items())
