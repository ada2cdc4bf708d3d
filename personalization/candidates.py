"""A turn's standing-instruction selection at a cost bounded by what it returns.

A profile small enough to go in whole (its conditional items fit the per-turn cap) is
read whole, as selection needs every item to decide. A larger one is ranked in numpy
over the user's contiguous vector block (store/vector_index.py): every row's best
cosine over its keys, its domain and constraint terms from the meta packed with it, the
same rank and evidence as personalization/selection.py computes, then only the top
rows become objects: held with the block once read (from SQL by id, the first time a
turn needs them), so a steady turn reads no SQL at all. The always-on rows come from a
per-user memo keyed by the user's change stamp, so they cost no query per turn.

Exactness: the top rows are the full ranking's prefix. If the selection over them
reaches the per-turn cap, or leaves less budget than any item costs, the rows after
them could not have changed it; otherwise more rows are taken (in the worst case all
eligible ones). `omitted` lists the cut items among the rows taken, not across the
whole profile (on a large profile that would be most of it)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from personalization.applicability import ApplicabilityModel, TurnDomains
from personalization.compose import ProfileItem, render_item
from personalization.embedder import Vectors
from personalization.selection import (
    CONSTRAINT_WEIGHT,
    DOMAIN_WEIGHT,
    Reason,
    Selection,
    SelectionPolicy,
    Similarity,
    select_applicable_instructions,
)
from personalization.text import estimate_tokens
from store.index_manager import IndexManager
from store.instructions import (
    COLLECTION,
    ROLE_CONDITION,
    ROLE_REQUEST,
    ROLE_TEXT,
    ActiveInstruction,
    InstructionRepository,
)
from store.models import InstructionKind
from store.scope import UserScope
from store.vector_index import (
    META_ALWAYS_ON,
    META_CONSTRAINT,
    META_DOMAIN_SHIFT,
    BlockRanking,
    Ranker,
    RowScores,
)

FIRST_K = 16  # rows taken first from a large profile's ranking (or 2 x the cap); x4
GROWTH = 4
# No standing instruction renders shorter than one with empty fields: when less budget
# is left, no row outside the search could have gone in.
Cost = Callable[[ActiveInstruction], int]
MIN_ITEM_COST = estimate_tokens(render_item(ProfileItem("standing_instruction", {"text": ""})))


@dataclass(frozen=True, slots=True)
class _Memo:
    stamp: int
    rows: list[ActiveInstruction]


class AlwaysOnMemo:
    """Each user's always-on rows, valid while the user's change stamp is unchanged: a
    write anywhere moves the stamp (the turn's `ensure_fresh` reads it), so the memo
    follows SQL like the vector cache does. Deleted users are forgotten."""

    def __init__(self, instructions: InstructionRepository, index: IndexManager) -> None:
        self._instructions = instructions
        self._index = index
        self._lock = threading.Lock()
        self._memo: dict[uuid.UUID, _Memo] = {}
        index.forget_hooks.append(self.forget)

    def rows(self, scope: UserScope) -> list[ActiveInstruction]:
        stamp = self._index.stamp(scope.user_id)
        with self._lock:
            held = self._memo.get(scope.user_id)
        if held is not None and held.stamp == stamp:
            return held.rows
        # Read after the stamp: a write in between leaves a stamp below the database's,
        # so the next turn refreshes the user and reads again (never the reverse).
        rows = self._instructions.active(scope, always_on=True)
        with self._lock:
            self._memo[scope.user_id] = _Memo(stamp, rows)
        return rows

    def forget(self, user_id: uuid.UUID) -> None:
        with self._lock:
            self._memo.pop(user_id, None)


def _domain_terms(
    candidate: ActiveInstruction, turn: TurnDomains | None
) -> tuple[float, float | None]:
    """(domain affinity, the turn's score of a constraint's matched domain or None)."""
    if turn is None or not candidate.domains:
        return 0.0, None
    constraint = (
        turn.constraint_match(candidate.domains)
        if candidate.kind == InstructionKind.constraint
        else None
    )
    return turn.affinity(candidate.domains), constraint


def similarities(
    candidates: Sequence[ActiveInstruction],
    keys: Mapping[uuid.UUID, Mapping[int, float]],
    turn: TurnDomains | None,
) -> dict[uuid.UUID, Similarity]:
    """Each conditional candidate's cosines per key role and its domain terms."""
    similarity: dict[uuid.UUID, Similarity] = {}
    for candidate in candidates:
        roles = keys.get(candidate.row_id, {})
        if candidate.always_on or ROLE_TEXT not in roles:
            continue
        domain, constraint = _domain_terms(candidate, turn)
        similarity[candidate.row_id] = Similarity(
            text=roles[ROLE_TEXT],
            condition=roles.get(ROLE_CONDITION),
            request=roles.get(ROLE_REQUEST),
            domain=domain,
            constraint_domain=constraint,
        )
    return similarity


RANK_SLACK = 1e-4  # rows this close to the last one taken are taken too (float32 vs 64)


def ranker(turn: TurnDomains | None, order: Sequence[str], floor: float) -> Ranker:
    """Rank and evidence of every row at once, as `Similarity.rank/evidence` give them;
    -inf for the always-on rows and, when the floor applies, for rows below it."""
    centred = np.array([turn.centred.get(d, np.nan) if turn else np.nan for d in order])
    raw = np.array([turn.raw.get(d, np.nan) if turn and d in turn.about else np.nan for d in order])

    def rank(rows: RowScores) -> npt.NDArray[np.float64]:
        metas = rows.metas
        bonus = np.zeros(len(metas))
        constraint = np.full(len(metas), -np.inf)
        if turn is not None and order:
            has = ((metas[:, None] >> (META_DOMAIN_SHIFT + np.arange(len(order)))) & 1) != 0
            known = has & ~np.isnan(centred)
            affinity = np.where(known, centred, -np.inf).max(axis=1, initial=-np.inf)
            bonus += DOMAIN_WEIGHT * np.where(known.any(axis=1), affinity, 0.0)
            matched = has & ~np.isnan(raw) & ((metas & META_CONSTRAINT) != 0)[:, None]
            constraint = np.where(matched, raw, -np.inf).max(axis=1, initial=-np.inf)
            bonus += np.where(matched.any(axis=1), CONSTRAINT_WEIGHT, 0.0)
        bonus[(metas & META_ALWAYS_ON) != 0] = -np.inf
        best = rows.best.astype(np.float64)  # compared in float64, as selection does
        ranks = best + bonus[rows.meta_of]
        # Evidence (the best key, or a matched constraint's domain score) below the
        # floor: max(best, constraint) < floor, i.e. both are; per meta for the latter.
        low = best < floor
        reached = constraint >= floor
        if reached.any():
            low &= ~reached[rows.meta_of]
        ranks[low] = -np.inf
        return ranks

    return rank


def could_change(
    ranking: BlockRanking,
    fetched: Sequence[int],
    selection: Selection,
    policy: SelectionPolicy,
    cost: Cost,
) -> npt.NDArray[np.bool_]:
    """The rows not fetched that the selection over every row might take (per row of the
    ranking); none means the selection over the fetched rows is the full one.

    Selection walks rows in rank order and takes each that fits the budget left, up to
    the cap. A row below every item taken (by more than the float slack) comes after
    them all, when the budget left is the selection's and the count its count: it could
    be taken only if the cap is not reached and it fits what is left. A row near or
    above an item taken might come before it: it could be taken if it fits the budget
    the always-on items leave. An unknown cost fits any budget of at least
    MIN_ITEM_COST (no item renders shorter)."""
    taken = [s for s in selection.selected if s.reason != Reason.always_on]
    left = policy.token_budget - selection.tokens
    before = left + sum(cost(s.instruction) for s in taken)
    costs = ranking.costs

    def fits(budget: int) -> npt.NDArray[np.bool_]:
        if budget >= MIN_ITEM_COST:  # unknown (-1) and known costs alike: one pass
            return np.asarray(costs <= budget)
        return (costs >= 0) & (costs <= budget)

    lowest = min((s.score for s in taken), default=np.inf)
    # Near rows are finite (`lowest` is); fits(left) is within fits(before) (left is
    # less), so this is: finite and (near ? fits(before) : fits(left) under the cap).
    could = (ranking.ranks >= lowest - RANK_SLACK) & fits(before)
    if len(taken) < policy.max_items:
        could |= np.isfinite(ranking.ranks) & fits(left)
    could[list(fetched)] = False
    return could


def cost_key(cost: Cost) -> object:
    """What identifies a cost function across turns, so costs learned under it can be
    reused: a plain function (or a lambda without captured variables, which a turn
    builds anew each time) by its code; anything else is not remembered (None)."""
    code = getattr(cost, "__code__", None)
    if code is None or getattr(cost, "__closure__", None) or getattr(cost, "__defaults__", None):
        return None
    return code


class InstructionCandidates:
    def __init__(
        self,
        instructions: InstructionRepository,
        index: IndexManager,
        applicability: ApplicabilityModel | None,
        first_k: int | None = None,
    ) -> None:
        self._instructions = instructions
        self._index = index
        self._applicability = applicability
        self._always_on = AlwaysOnMemo(instructions, index)
        self._first_k = first_k

    def select(
        self,
        scope: UserScope,
        query: Vectors,
        policy: SelectionPolicy,
        cost: Cost,
    ) -> Selection:
        """The selection a scan of the whole profile gives (module docstring)."""
        cache = self._index.cache
        always = self._always_on.rows(scope)
        held = cache.user_rows(scope.user_id, COLLECTION)
        conditional = held - cache.holds_rows(scope.user_id, COLLECTION, (a.row_id for a in always))
        if conditional == 0:
            return select_applicable_instructions(always, {}, policy, cost)
        turn = self._applicability.turn_domains(query) if self._applicability else None
        if conditional <= policy.max_items:
            # Small enough to go in whole: selection must see every item.
            candidates = self._instructions.active(scope)
            found = cache.search_rows(scope.user_id, COLLECTION, query, None)
            return select_applicable_instructions(
                candidates, similarities(candidates, found.rows, turn), policy, cost
            )
        # More conditional items than the cap: never whole, so rank from the top.
        rank = ranker(turn, self._instructions.domain_order, policy.floor)
        key = cost_key(cost)
        ranking = cache.ranking(scope.user_id, COLLECTION, query, rank, key)
        ranked = replace(policy, whole_profile=False)
        if ranking is None:
            return select_applicable_instructions(always, {}, ranked, cost)
        always_ids = {a.row_id for a in always}
        limit = self._first_k or max(FIRST_K, 2 * policy.max_items)
        asked: list[int] = ranking.top(limit)[0]
        seen: list[int] = []  # every row index asked for (SQL may no longer have some)
        keys: dict[uuid.UUID, dict[int, float]] = {}
        fetched: list[ActiveInstruction] = []
        while True:
            seen += asked
            asked = [i for i in asked if ranking.row_ids[i] not in always_ids]
            keys.update((row.row_id, row.roles) for row in ranking.rows(asked))
            rows = self._rows(scope, ranking, asked)
            fetched += rows
            self._learn_costs(scope, ranking, asked, rows, cost, key)
            selection = select_applicable_instructions(
                always + fetched, similarities(fetched, keys, turn), ranked, cost
            )
            could = could_change(ranking, seen, selection, ranked, cost)
            if not could.any():
                return selection
            asked = ranking.top(limit, among=could)[0]
            limit *= GROWTH

    def _rows(
        self, scope: UserScope, ranking: BlockRanking, asked: Sequence[int]
    ) -> list[ActiveInstruction]:
        """The conditional rows at these indexes of the ranking: from the block's memory
        of them, else from SQL by id (in scope), then remembered with the block. A row
        in the block after the turn's freshness check is active, and the memory of a
        row goes with the row (VectorCache.keep_row_fields), so a turn on a large
        profile reads no SQL for rows an earlier turn read. A row SQL no longer has
        (deleted since the check) is left out, as SQL leaves it out."""
        cache, user = self._index.cache, scope.user_id
        held = cache.row_fields(user, COLLECTION, ranking, asked)
        rows = [r for r in held.values() if isinstance(r, ActiveInstruction) and not r.always_on]
        missing = {ranking.row_ids[i]: i for i in asked if i not in held}
        if missing:
            read = self._instructions.active(scope, row_ids=list(missing), always_on=False)
            cache.keep_row_fields(
                user, COLLECTION, ranking, {missing[row.row_id]: row for row in read}
            )
            rows += read
        return rows

    def _learn_costs(
        self,
        scope: UserScope,
        ranking: BlockRanking,
        asked: Sequence[int],
        rows: Sequence[ActiveInstruction],
        cost: Cost,
        key: object,
    ) -> None:
        """Rows are immutable, so a fetched row's cost is known for as long as it lives:
        the next turns need not fetch it to know it cannot fit."""
        if key is None or not rows:
            return
        costs = {row.row_id: cost(row) for row in rows}
        for index in asked:
            known = costs.get(ranking.row_ids[index])
            if known is not None:
                ranking.learn_cost(index, known)
        self._index.cache.set_costs(scope.user_id, COLLECTION, key, costs)
