"""One turn's ranking of one user's block, computed once and asked several questions.

A large profile's selection may need more than the top rows (a tight budget leaves room
only for a short item ranked far down), so it asks the ranking again: the next rows
among those that could still be taken. Scoring the block is the expensive part (every
vector, one pass over memory), so it is done once per turn, not once per question.

The ranking holds views of the block as it was when ranked, not the block itself, and
needs no lock afterwards: a block only appends past what these views cover, and a
removal or compaction builds new arrays (vector_index._UserIndex), so a view is never
written again. Each row's rendering cost is held with the block too (-1: not known yet):
rows are immutable, so a cost learned once stays right for as long as the row lives. So
are the rows' fields once a turn has read them (VectorCache.keep_row_fields): a change
in place (a re-derivation's kind and domains) reaches the cache as the row's
replacement, which drops both. A row's per-key cosines are read back from the scan."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float32]


MIN_SPLIT_VECTORS = 1 << 15  # below this a block is scanned on one thread (~1 ms)


class _ScanThreads:
    """How many threads scan one large block (`TAILOR_SCAN_THREADS`, set at start by
    service/threads.py), and the pool they come from. The scan is bound by memory
    bandwidth: a split helps one turn's latency while a core is idle, and costs no
    throughput under load (service/threads.py says what was measured)."""

    def __init__(self) -> None:
        self.parts = 1
        self.pool: ThreadPoolExecutor | None = None

    def set(self, parts: int) -> None:
        if parts == self.parts:
            return
        old, self.pool = self.pool, None
        self.parts = parts
        if parts > 1:
            self.pool = ThreadPoolExecutor(parts - 1, thread_name_prefix="tailor-scan")
        if old is not None:
            old.shutdown(wait=False)


SCAN = _ScanThreads()


def set_scan_threads(parts: int) -> None:
    SCAN.set(max(1, parts))


def _einsum_into(vectors: Vector, query: Vector, out: Vector) -> None:
    np.einsum("ij,j->i", vectors, query, out=out)


def inner_products(vectors: Vector, query: Vector) -> Vector:
    """Every vector's inner product with the query (= cosine on unit vectors), exact.
    einsum computes each row the same way wherever it sits; a BLAS matrix-vector
    product does not (it handles rows in groups, so a row's last bit depends on its
    position), and replicas whose blocks are laid out differently must rank alike. The
    same holds for a split over threads: each part is rows of the same block, each row
    computed alone, so a row's value does not depend on where the split falls."""
    pool, parts = SCAN.pool, SCAN.parts
    if pool is None or len(vectors) < MIN_SPLIT_VECTORS:
        scores: Vector = np.einsum("ij,j->i", vectors, query)
        return scores
    out = np.empty(len(vectors), dtype=np.result_type(vectors, query))
    cuts = [len(vectors) * i // parts for i in range(parts + 1)]
    spans = list(itertools.pairwise(cuts))
    done = [pool.submit(_einsum_into, vectors[a:b], query, out[a:b]) for a, b in spans[1:]]
    a, b = spans[0]
    _einsum_into(vectors[a:b], query, out[a:b])  # the calling thread scans one part
    for future in done:
        future.result()
    return out


def best_first(
    candidates: npt.NDArray[np.intp],
    values: npt.NDArray[Any],
    limit: int,
    tie_key: Callable[[int], bytes],
) -> list[int]:
    """The `limit` candidates with the highest values, highest first; exact ties by
    `tie_key`, so the answer does not depend on where a vector sits in its block. Only
    the candidates at or above the limit-th value are sorted in Python."""
    if len(candidates) > limit:
        cut = np.partition(values[candidates], len(candidates) - limit)[len(candidates) - limit]
        candidates = candidates[values[candidates] >= cut]
    ordered = sorted(candidates.tolist(), key=lambda i: (-float(values[i]), tie_key(i)))
    return ordered[:limit]


@dataclass(frozen=True, slots=True)
class RankedRow:
    row_id: uuid.UUID
    roles: dict[int, float]  # best cosine per key role


class BlockRanking:
    """Every row of one block ranked against one query (`ranks`, -inf: cannot be
    chosen), with the block's known costs (`costs`, -1: unknown). Rows are addressed
    by their index in the block at ranking time."""

    def __init__(
        self,
        row_ids: Sequence[uuid.UUID],
        first: npt.NDArray[np.int64],
        roles: npt.NDArray[np.int16],
        vectors: Vector,
        query: Vector,
        ranks: npt.NDArray[np.float64],
        costs: npt.NDArray[np.int32],
        block: object = None,
        per_vector: Vector | None = None,
    ) -> None:
        self.row_ids = row_ids
        self._first = first
        self._roles = roles
        self._vectors = vectors
        self._query = query
        self.ranks = ranks
        self.costs = costs
        # What identifies the block as ranked (its row fields' holder, which a
        # compaction or a reload replaces): row indexes mean this ranking's rows only
        # while the cache's block is still the same one (VectorCache.row_fields).
        self.block = block
        self._per_vector = per_vector  # every vector's score, when the scan kept them

    def __len__(self) -> int:
        return len(self.ranks)

    def top(
        self, limit: int, among: npt.NDArray[np.bool_] | None = None
    ) -> tuple[list[int], float]:
        """Indexes of the `limit` highest finite ranks (among the rows `among` marks),
        highest first, and the highest rank left out (-inf when none is). Equal ranks
        are ordered by row id, never by position in the block, which differs between
        replicas and load paths."""
        wanted = np.isfinite(self.ranks)
        if among is not None:
            wanted &= among
        order = best_first(
            np.flatnonzero(wanted), self.ranks, limit + 1, lambda i: self.row_ids[i].bytes
        )
        rest = float(self.ranks[order[limit]]) if len(order) > limit else -np.inf
        return order[:limit], rest

    def roles_of(self, index: int) -> dict[int, float]:
        """Each key role's best cosine for one row, scored exactly (as the block was)."""
        start = int(self._first[index])
        end = int(self._first[index + 1]) if index + 1 < len(self._first) else len(self._vectors)
        if self._per_vector is not None:
            scores = self._per_vector[start:end]
        else:
            scores = inner_products(self._vectors[start:end], self._query)
        roles: dict[int, float] = {}
        for role, score in zip(self._roles[start:end].tolist(), scores.tolist(), strict=True):
            roles[role] = max(score, roles.get(role, -np.inf))
        return roles

    def rows(self, indexes: Sequence[int]) -> list[RankedRow]:
        return [RankedRow(self.row_ids[i], self.roles_of(i)) for i in indexes]

    def learn_cost(self, index: int, cost: int) -> None:
        self.costs[index] = cost
