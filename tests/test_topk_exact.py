"""A large profile is ranked from the top of the vector search, never scanned whole: the
selection must still equal the one a scan of every item gives (personalization/
candidates.py). Random vectors, kinds and domains; ties; deleted rows; empty users;
tight budgets; a first search far too small, so the widening runs."""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import pytest

from personalization.applicability import TurnDomains
from personalization.candidates import InstructionCandidates, similarities
from personalization.context import _cost as context_cost
from personalization.context import instruction_item
from personalization.selection import (
    Selection,
    SelectionPolicy,
    select_applicable_instructions,
)
from store.instructions import (
    COLLECTION,
    ROLE_CONDITION,
    ROLE_REQUEST,
    ROLE_TEXT,
    ActiveInstruction,
)
from store.models import InstructionKind
from store.scope import UserScope
from store.vector_index import VectorCache, pack_meta

DIM = 16
DOMAINS = ["food", "travel", "code", "money", "health"]


class FakeRepository:
    """What InstructionCandidates asks of the repository, over a list, counting reads."""

    def __init__(self) -> None:
        self.rows: dict[uuid.UUID, list[ActiveInstruction]] = {}
        self.fetched = 0
        self.domain_order = tuple(DOMAINS)

    def active(
        self,
        scope: UserScope,
        *,
        row_ids: Sequence[uuid.UUID] | None = None,
        always_on: bool | None = None,
    ) -> list[ActiveInstruction]:
        rows = self.rows.get(scope.user_id, [])
        if row_ids is not None:
            wanted = set(row_ids)
            rows = [r for r in rows if r.row_id in wanted]
        if always_on is not None:
            rows = [r for r in rows if r.always_on == always_on]
        self.fetched += len(rows)
        return list(rows)


class FakeIndex:
    def __init__(self, cache: VectorCache) -> None:
        self.cache = cache
        self.forget_hooks: list[Any] = []

    def stamp(self, user_id: uuid.UUID) -> int:
        return 0


class FixedTurn:
    def __init__(self, turn: TurnDomains) -> None:
        self.turn = turn

    def turn_domains(self, query: Any) -> TurnDomains:
        return self.turn


def unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def scope_of(user_id: uuid.UUID) -> UserScope:
    return UserScope(
        tenant_id=uuid.UUID(int=1), user_id=user_id, external_id="u", key_id=uuid.UUID(int=2)
    )


def cost(item: ActiveInstruction) -> int:
    """What a turn charges: the rendered item's tokens (never below MIN_ITEM_COST)."""
    return context_cost(instruction_item(item))


def fill(seed: int, n: int, repo: FakeRepository, cache: VectorCache, user_id: uuid.UUID) -> None:
    rng = np.random.default_rng(seed)
    pick = random.Random(seed)
    shared = unit(rng)  # some rows share a vector exactly: ties in rank
    rows = []
    for i in range(n):
        row = ActiveInstruction(
            row_id=uuid.uuid4(),
            instruction_id=uuid.uuid4(),
            version=1,
            text="x" * pick.randint(4, 120),
            applies_when=None,
            always_on=pick.random() < 0.03,
            kind=pick.choice([InstructionKind.constraint, InstructionKind.style, None]),
            domains=tuple(pick.sample(DOMAINS, pick.randint(0, 2))),
        )
        vectors = [(ROLE_TEXT, shared if i % 17 == 0 else unit(rng))]
        if pick.random() < 0.4:
            vectors.append((ROLE_CONDITION, unit(rng)))
        if pick.random() < 0.2:
            vectors += [(ROLE_REQUEST, unit(rng)), (ROLE_REQUEST, unit(rng))]
        meta = pack_meta(
            row.always_on, row.kind == InstructionKind.constraint, row.domains, DOMAINS
        )
        cache.put(user_id, COLLECTION, row.row_id, vectors, meta)
        rows.append(row)
    # Deleted rows leave both SQL and the cache.
    for row in pick.sample(rows, n // 10):
        rows.remove(row)
        cache.remove(user_id, COLLECTION, row.row_id)
    repo.rows[user_id] = rows


def turn_of(seed: int) -> TurnDomains:
    rng = np.random.default_rng(seed)
    raw = {d: float(rng.uniform(0.1, 0.7)) for d in DOMAINS}
    centred = {d: float(rng.normal()) for d in DOMAINS}
    about = frozenset(sorted(raw, key=raw.__getitem__)[-2:])
    return TurnDomains(raw=raw, centred=centred, about=about)


def brute_force(
    repo: FakeRepository,
    cache: VectorCache,
    scope: UserScope,
    query: np.ndarray,
    policy: SelectionPolicy,
    turn: TurnDomains,
) -> Selection:
    """The selection over every item, scored one by one (what a turn did before)."""
    candidates = repo.active(scope)
    found = cache.search_rows(scope.user_id, COLLECTION, query, None)
    assert found.bound is None
    return select_applicable_instructions(
        candidates, similarities(candidates, found.rows, turn), policy, cost
    )


def chosen(selection: Selection) -> list[tuple[uuid.UUID, str, float]]:
    return [(s.instruction.row_id, s.reason.value, round(s.score, 5)) for s in selection.selected]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(
    ("budget", "max_items", "floor"), [(4000, 5, 0.0), (60, 8, -1.0), (800, 3, 0.3)]
)
def test_ranked_selection_equals_a_scan_of_every_item(
    seed: int, budget: int, max_items: int, floor: float
) -> None:
    cache, repo = VectorCache(DIM), FakeRepository()
    user = uuid.uuid4()
    fill(seed, 1500, repo, cache, user)
    turn = turn_of(seed)
    candidates = InstructionCandidates(
        cast(Any, repo), cast(Any, FakeIndex(cache)), cast(Any, FixedTurn(turn)), first_k=4
    )
    policy = SelectionPolicy(token_budget=budget, max_items=max_items, floor=floor)
    rng = np.random.default_rng(seed + 100)
    for query in [unit(rng) for _ in range(5)] + [cache_vector(cache, user)]:
        repo.fetched = 0
        got = candidates.select(scope_of(user), query, policy, cost)
        fetched = repo.fetched
        want = brute_force(repo, cache, scope_of(user), query, policy, turn)
        assert chosen(got) == chosen(want)
        assert got.tokens == want.tokens
        if budget >= 800:  # the cap binds long before the budget: few rows are read
            assert fetched < len(repo.rows[user]) // 2


def cache_vector(cache: VectorCache, user: uuid.UUID) -> np.ndarray:
    """A query equal to a stored vector (the one several rows share): exact ties."""
    entry = next(e for e in cache.entries() if e.user_id == user)
    return entry.vector


def test_small_profiles_and_empty_users_are_scanned_whole() -> None:
    cache, repo = VectorCache(DIM), FakeRepository()
    turn = turn_of(1)
    candidates = InstructionCandidates(
        cast(Any, repo), cast(Any, FakeIndex(cache)), cast(Any, FixedTurn(turn))
    )
    policy = SelectionPolicy(token_budget=4000, max_items=50, floor=0.9)
    empty = uuid.uuid4()
    assert candidates.select(scope_of(empty), unit(np.random.default_rng(0)), policy, cost) == (
        Selection([], [], 0)
    )
    small = uuid.uuid4()
    fill(3, 40, repo, cache, small)
    query = unit(np.random.default_rng(5))
    got = candidates.select(scope_of(small), query, policy, cost)
    want = brute_force(repo, cache, scope_of(small), query, policy, turn)
    assert got == want
    # The whole profile fits: every conditional item is in, most of them as whole_profile.
    conditional = [r for r in repo.rows[small] if not r.always_on]
    assert len([s for s in got.selected if not s.instruction.always_on]) == len(conditional)
    assert any(s.reason.value == "whole_profile" for s in got.selected)


def test_search_rows_scores_every_key_of_a_found_row() -> None:
    cache = VectorCache(DIM)
    rng = np.random.default_rng(9)
    user, near, far = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    query = unit(rng)
    other = unit(rng)
    cache.put(user, COLLECTION, near, [(ROLE_TEXT, other), (ROLE_CONDITION, query)])
    cache.put(user, COLLECTION, far, [(ROLE_TEXT, -query)])
    found = cache.search_rows(user, COLLECTION, query, 1)
    assert set(found.rows) == {near}
    # The text key was not among the top 1 vectors, yet it is scored exactly.
    assert found.rows[near][ROLE_TEXT] == pytest.approx(float(other @ query), abs=1e-5)
    assert found.rows[near][ROLE_CONDITION] == pytest.approx(1.0, abs=1e-5)
    assert found.bound == pytest.approx(1.0, abs=1e-5)
    assert cache.search_rows(user, COLLECTION, query, 10).bound is None
    assert cache.search_rows(uuid.uuid4(), COLLECTION, query, 10).rows == {}


def test_a_large_profile_over_http_selects_what_a_scan_of_every_item_selects(api: Any) -> None:
    """The real path (SQL fetch of the top rows by id on SQLite and PostgreSQL, the
    packed meta from SQL and from the writer): 30 conditional items and a cap of 3, so
    the turn ranks from the top, compared with a scan of every item by the same code."""
    headers = api.tenant()
    api.user(headers, "big")
    topics = ["cooking", "travel", "code", "money", "health", "music"]
    for i in range(30):
        api.instruction(
            headers,
            "big",
            text=f"Rule {i}: I avoid gluten" if i % 7 == 0 else f"Prefer short answers {i}",
            applies_when=f"when I ask about {topics[i % len(topics)]}",
        )
    api.instruction(headers, "big", text="Call me Sam", always_on=True)
    ports = api.client.app.state.ports
    key = headers["Authorization"].removeprefix("Bearer ")
    scope = ports.users.resolve(ports.keys.authenticate(key), "big")
    options = ports.settings.context_options(top_k=3, threshold=0.0)
    policy = replace_policy(options.policy)
    for question in ["What should I cook tonight?", "Plan a trip to Rome", "Fix my Python"]:
        body = api.context(headers, "big", question, top_k=3, whole_profile=False, threshold=0.0)
        query = ports.embedder.embed([question])[0]
        turn = ports.context._applicability.turn_domains(query)
        candidates = ports.instructions.active(scope)
        found = ports.index.cache.search_rows(scope.user_id, COLLECTION, query, None)
        want = select_applicable_instructions(
            candidates,
            similarities(candidates, found.rows, turn),
            policy,
            lambda c: context_cost(instruction_item(c)),
        )
        assert [i["id"] for i in body["instructions"]] == [
            str(s.instruction.instruction_id) for s in want.selected
        ]
        assert len(body["instructions"]) == 4  # Sam, always; and the cap of 3


def replace_policy(policy: SelectionPolicy) -> SelectionPolicy:
    return SelectionPolicy(
        token_budget=policy.token_budget,
        max_items=policy.max_items,
        floor=policy.floor,
        whole_profile=False,
    )
