"""A large profile's turn reads only the rows that could be chosen, even when the budget
is tight: rows' rendering costs are learned with the block (personalization/candidates.py,
store/block_ranking.py). The selection must stay the one a scan of every item gives:
near-ties in rank, costs learned under another cost function, writes between turns."""

from __future__ import annotations

import uuid
from typing import Any, cast

import numpy as np

from personalization.candidates import InstructionCandidates, cost_key
from personalization.selection import SelectionPolicy
from store.instructions import COLLECTION, ROLE_TEXT, ActiveInstruction
from store.models import InstructionKind
from store.vector_index import VectorCache, pack_meta
from tests.test_topk_exact import (
    DIM,
    DOMAINS,
    FakeIndex,
    FakeRepository,
    FixedTurn,
    brute_force,
    chosen,
    cost,
    scope_of,
    turn_of,
    unit,
)


def add_row(
    repo: FakeRepository,
    cache: VectorCache,
    user: uuid.UUID,
    vector: np.ndarray,
    text: str,
    *,
    always_on: bool = False,
) -> ActiveInstruction:
    row = ActiveInstruction(
        row_id=uuid.uuid4(),
        instruction_id=uuid.uuid4(),
        version=1,
        text=text,
        applies_when=None,
        always_on=always_on,
        kind=InstructionKind.style,
        domains=(),
    )
    meta = pack_meta(always_on, False, (), DOMAINS)
    cache.put(user, COLLECTION, row.row_id, [(ROLE_TEXT, vector)], meta)
    repo.rows.setdefault(user, []).append(row)
    return row


def tight_profile(seed: int, n: int) -> tuple[FakeRepository, VectorCache, uuid.UUID]:
    """Long items everywhere, a few short ones far down the ranking, and always-on items
    that leave room for a short item only: what a bench profile looks like."""
    rng = np.random.default_rng(seed)
    repo, cache, user = FakeRepository(), VectorCache(DIM), uuid.uuid4()
    for _ in range(3):
        add_row(repo, cache, user, unit(rng), "y" * 150, always_on=True)
    shared = unit(rng)
    for i in range(n):
        short = i % 97 == 0
        # Every 13th row shares a vector exactly, and every 11th nearly (below the
        # float slack): ties and near-ties in rank, broken by instruction id.
        if i % 13 == 0:
            vector = shared
        elif i % 11 == 0:
            vector = shared + np.float32(1e-7) * unit(rng)
        else:
            vector = unit(rng)
        add_row(repo, cache, user, vector, "s" if short else "x" * (130 + i % 40))
    return repo, cache, user


def test_a_tight_budget_reads_few_rows_once_their_costs_are_known() -> None:
    repo, cache, user = tight_profile(1, 3000)
    turn = turn_of(1)
    candidates = InstructionCandidates(
        cast(Any, repo), cast(Any, FakeIndex(cache)), cast(Any, FixedTurn(turn))
    )
    policy = SelectionPolicy(token_budget=212, max_items=5, floor=-1.0)
    rng = np.random.default_rng(7)
    queries = [unit(rng) for _ in range(4)] + [repo_vector(cache, user)]
    reads = []
    for query in queries + queries:
        repo.fetched = 0
        got = candidates.select(scope_of(user), query, policy, cost)
        reads.append(repo.fetched)
        want = brute_force(repo, cache, scope_of(user), query, policy, turn)
        assert chosen(got) == chosen(want)
        assert got.tokens == want.tokens
        # The budget left after the always-on items fits short items only.
        taken = [s for s in got.selected if not s.instruction.always_on]
        assert taken and all(s.instruction.text == "s" for s in taken)
    conditional = len(repo.rows[user]) - 3
    # The first turn learns most rows' costs; after it every turn reads a few rows.
    assert reads[0] > conditional // 2
    assert max(reads[len(queries) :]) < conditional // 20


def repo_vector(cache: VectorCache, user: uuid.UUID) -> np.ndarray:
    """The vector several rows share: exact ties in rank."""
    vectors = [e.vector for e in cache.entries() if e.user_id == user]
    values, counts = np.unique(np.stack(vectors), axis=0, return_counts=True)
    return np.asarray(values[int(np.argmax(counts))], dtype=np.float32)


def test_costs_learned_under_one_cost_function_are_not_used_by_another() -> None:
    repo, cache, user = tight_profile(2, 1500)
    turn = turn_of(2)
    candidates = InstructionCandidates(
        cast(Any, repo), cast(Any, FakeIndex(cache)), cast(Any, FixedTurn(turn))
    )
    policy = SelectionPolicy(token_budget=212, max_items=4, floor=-1.0)
    query = unit(np.random.default_rng(3))
    candidates.select(scope_of(user), query, policy, cost)  # learns `cost`'s costs

    def flat(item: ActiveInstruction) -> int:
        """Every conditional item costs the same: long ones fit now, short ones do not
        save room; a turn that reused the first function's costs would skip them."""
        return 30 if not item.always_on else cost(item)

    assert cost_key(flat) != cost_key(cost)
    for chooser in (flat, cost, flat):
        got = candidates.select(scope_of(user), query, policy, chooser)
        want = brute_force_with(repo, cache, user, query, policy, turn, chooser)
        assert chosen(got) == chosen(want)
        assert got.tokens == want.tokens
    with_closure = 30
    assert cost_key(lambda item: with_closure) is None  # captured state: not remembered


def brute_force_with(
    repo: FakeRepository,
    cache: VectorCache,
    user: uuid.UUID,
    query: np.ndarray,
    policy: SelectionPolicy,
    turn: Any,
    chooser: Any,
) -> Any:
    from personalization.candidates import similarities
    from personalization.selection import select_applicable_instructions

    candidates = repo.active(scope_of(user))
    found = cache.search_rows(user, COLLECTION, query, None)
    return select_applicable_instructions(
        candidates, similarities(candidates, found.rows, turn), policy, chooser
    )


def test_writes_between_turns_keep_the_selection_exact() -> None:
    """New rows (cost unknown), removed rows and a compaction between turns: costs
    learned before stay with their rows, new rows are read when they could fit."""
    repo, cache, user = tight_profile(3, 2500)
    turn = turn_of(3)
    candidates = InstructionCandidates(
        cast(Any, repo), cast(Any, FakeIndex(cache)), cast(Any, FixedTurn(turn))
    )
    policy = SelectionPolicy(token_budget=212, max_items=5, floor=-1.0)
    rng = np.random.default_rng(11)
    query = unit(rng)
    for step in range(4):
        got = candidates.select(scope_of(user), query, policy, cost)
        want = brute_force(repo, cache, scope_of(user), query, policy, turn)
        assert chosen(got) == chosen(want), step
        # A short item close to the query arrives; most long rows leave (compaction).
        add_row(repo, cache, user, query + np.float32(0.05) * unit(rng), "t")
        rows = repo.rows[user]
        for row in rows[3 + step * 500 : 3 + (step + 1) * 500]:
            cache.remove(user, COLLECTION, row.row_id)
        repo.rows[user] = [r for r in rows if cache.holds_rows(user, COLLECTION, [r.row_id])]


def test_a_ranking_stays_what_it_was_after_the_block_changes() -> None:
    """A turn asks its ranking several questions without the cache's lock: writes in
    between (appends, removals, a compaction) must not change what it answers."""
    cache = VectorCache(DIM)
    rng = np.random.default_rng(5)
    user = uuid.uuid4()
    ids = [uuid.uuid4() for _ in range(1500)]
    for row_id in ids:
        cache.put(user, COLLECTION, row_id, [(ROLE_TEXT, unit(rng))])
    query = unit(rng)

    def by_score(rows: Any) -> Any:
        return rows.best.astype(np.float64)

    ranking = cache.ranking(user, COLLECTION, query, by_score)
    assert ranking is not None
    top, rest = ranking.top(10)
    before = ranking.rows(top)
    for row_id in ids[:1200]:  # past half dead: the block compacts
        cache.remove(user, COLLECTION, row_id)
    cache.put(user, COLLECTION, uuid.uuid4(), [(ROLE_TEXT, query)])
    assert ranking.top(10) == (top, rest)
    assert ranking.rows(top) == before
    fresh = cache.ranking(user, COLLECTION, query, by_score)
    assert fresh is not None and int(np.isfinite(fresh.ranks).sum()) == 301
