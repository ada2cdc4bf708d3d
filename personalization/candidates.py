"""A turn's standing-instruction selection at a cost bounded by what it returns.

A profile small enough to go in whole (its conditional items fit the per-turn cap) is
read whole, as selection needs every item to decide. A larger one is ranked from the
top of an exact per-user inner-product search: the rows owning the top k vectors are
scored on all their keys and fetched from SQL by id; the always-on rows come from a
per-user memo keyed by the user's change stamp, so they cost no query per turn.

Exactness: every row outside the search scores at most the k-th vector score on every
key, so its rank is at most that plus the largest bonus the turn can give (the domain
weight times the turn's best centred domain score, plus the constraint bonus). If every
conditional item selected from the found rows ranks above that bound, and the cap is
reached or no item could fit in the budget left, the rows outside could not have changed
the selection, which is then the one a scan of the whole profile gives. Otherwise k
grows and the search runs again (in the worst case over everything). `omitted` then
lists the cut items among the rows considered, not across the whole profile."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

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

FIRST_K = 256  # vectors searched first on a large profile; x4 per retry
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


def max_bonus(turn: TurnDomains | None) -> float:
    """The most a turn's domain terms can add to any item's rank over its best cosine."""
    if turn is None:
        return 0.0
    best = max(turn.centred.values(), default=0.0)
    return DOMAIN_WEIGHT * max(best, 0.0) + (CONSTRAINT_WEIGHT if turn.about else 0.0)


def settled(selection: Selection, bound: float, policy: SelectionPolicy) -> bool:
    """Could no row ranking at most `bound` change this selection? (See the module.)"""
    taken = [s for s in selection.selected if s.reason != Reason.always_on]
    if any(s.score <= bound for s in taken):
        return False
    return len(taken) >= policy.max_items or policy.token_budget - selection.tokens < MIN_ITEM_COST


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
        ranked = replace(policy, whole_profile=False)
        slack = max_bonus(turn)
        always_ids = {a.row_id for a in always}
        k = self._first_k or FIRST_K
        while True:
            found = cache.search_rows(scope.user_id, COLLECTION, query, k)
            ids = [row_id for row_id in found.rows if row_id not in always_ids]
            fetched = self._instructions.active(scope, row_ids=ids, always_on=False)
            candidates = always + fetched
            selection = select_applicable_instructions(
                candidates, similarities(fetched, found.rows, turn), ranked, cost
            )
            if found.bound is None or settled(selection, found.bound + slack, ranked):
                return selection
            k *= GROWTH
