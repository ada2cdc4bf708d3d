from __future__ import annotations

import uuid
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from personalization.selection import (
    CONSTRAINT_WEIGHT,
    DOMAIN_WEIGHT,
    OmitReason,
    Reason,
    SelectionPolicy,
    Similarity,
    select_applicable_instructions,
)
from service.settings import Settings
from store.instructions import ActiveInstruction
from store.models import InstructionKind


def item(
    text: str,
    *,
    always: bool = False,
    cond: str | None = None,
    kind: InstructionKind | None = None,
    domains: tuple[str, ...] = (),
) -> ActiveInstruction:
    return ActiveInstruction(
        uuid.uuid4(), uuid.uuid4(), 1, text, cond, always, kind=kind, domains=domains
    )


def select(cands, sims, *, floor=0.5, cap=10, budget=1000, whole=False, cost=lambda _c: 10):
    policy = SelectionPolicy(token_budget=budget, max_items=cap, floor=floor, whole_profile=whole)
    return select_applicable_instructions(cands, sims, policy, cost=cost)


def test_always_on_first_then_ranked_with_the_floor_applied() -> None:
    a, b, c, d = item("always", always=True), item("b"), item("c", cond="x"), item("d")
    sims = {
        b.row_id: Similarity(0.6),
        c.row_id: Similarity(0.2, condition=0.9),
        d.row_id: Similarity(0.49),
    }
    result = select([a, b, c, d], sims)
    assert [(s.instruction, s.reason) for s in result.selected] == [
        (a, Reason.always_on),
        (c, Reason.matched_condition),
        (b, Reason.matched_text),
    ]
    assert result.selected[1].score == 0.9
    assert result.omitted == []  # d is below the floor: not relevant, so not reported
    assert result.tokens == 30


def test_a_profile_that_fits_goes_in_whole_in_rank_order() -> None:
    a, b, c = item("a"), item("b"), item("c")
    sims = {a.row_id: Similarity(0.05), b.row_id: Similarity(0.7), c.row_id: Similarity(-0.2)}
    result = select([a, b, c], sims, floor=0.5, whole=True)
    assert [(s.instruction, s.reason) for s in result.selected] == [
        (b, Reason.matched_text),
        (a, Reason.whole_profile),
        (c, Reason.whole_profile),
    ]
    assert result.omitted == []


def test_a_profile_over_the_cap_is_ranked_with_the_floor() -> None:
    cands = [item(str(i)) for i in range(4)]
    sims = {c.row_id: Similarity(0.1 * i) for i, c in enumerate(cands)}
    over_cap = select(cands, sims, floor=0.15, cap=3, whole=True)
    assert [s.instruction for s in over_cap.selected] == [cands[3], cands[2]]
    assert over_cap.omitted == []  # below the floor: not relevant, not reported


def test_a_small_profile_over_the_budget_fills_it_by_rank_without_the_floor() -> None:
    """The floor must never starve a small profile: within the cap, only the budget cuts."""
    cands = [item(str(i)) for i in range(4)]
    sims = {c.row_id: Similarity(0.1 * i) for i, c in enumerate(cands)}
    over_budget = select(cands, sims, floor=0.15, budget=35, whole=True)
    # 35 tokens hold three items of 10: the three ranked highest, the third below the floor
    assert [(s.instruction, s.reason) for s in over_budget.selected] == [
        (cands[3], Reason.matched_text),
        (cands[2], Reason.matched_text),
        (cands[1], Reason.whole_profile),
    ]
    assert [(o.instruction, o.reason) for o in over_budget.omitted] == [
        (cands[0], OmitReason.token_budget)
    ]
    # with whole_profile off (an app's choice), the floor applies to a small profile too
    ranked = select(cands, sims, floor=0.15, budget=35, whole=False)
    assert [s.instruction for s in ranked.selected] == [cands[3], cands[2]]


def test_item_cap_limits_conditional_only() -> None:
    always = [item(f"a{i}", always=True) for i in range(3)]
    cond = [item(f"c{i}") for i in range(5)]
    sims = {c.row_id: Similarity(0.9 - i * 0.01) for i, c in enumerate(cond)}
    result = select([*always, *cond], sims, cap=2)
    assert [s.instruction for s in result.selected] == [*always, cond[0], cond[1]]
    assert [o.instruction.text for o in result.omitted] == ["c2", "c3", "c4"]
    assert all(o.reason == OmitReason.top_k for o in result.omitted)


def test_budget_cuts_in_rank_order_skipping_what_does_not_fit() -> None:
    big, small, third = item("big"), item("small"), item("third")
    sims = {
        big.row_id: Similarity(0.9),
        small.row_id: Similarity(0.8),
        third.row_id: Similarity(0.7),
    }
    cost = {big.row_id: 80, small.row_id: 15, third.row_id: 10}
    result = select([third, small, big], sims, budget=90, cost=lambda c: cost[c.row_id])
    assert [s.instruction for s in result.selected] == [big, third]
    assert [(o.instruction, o.reason) for o in result.omitted] == [(small, OmitReason.token_budget)]
    assert result.tokens == 90


def test_always_on_over_budget_is_reported() -> None:
    a = item("always", always=True)
    result = select([a], {}, budget=5)
    assert result.selected == []
    assert [(o.instruction, o.reason) for o in result.omitted] == [(a, OmitReason.token_budget)]


def test_candidate_without_similarity_never_matches() -> None:
    lonely = item("no vector")
    assert select([lonely], {}, floor=0.0, whole=True).selected == []


def test_a_constraint_in_the_turns_domain_passes_the_floor_on_the_domain_score() -> None:
    celiac = item("I'm celiac", kind=InstructionKind.constraint, domains=("food",))
    jazz = item("I like jazz", kind=InstructionKind.style, domains=("music",))
    sims = {
        celiac.row_id: Similarity(0.05, domain=0.4, constraint_domain=0.55),
        jazz.row_id: Similarity(0.05, domain=-0.1),
    }
    result = select([celiac, jazz], sims, floor=0.2)
    assert [(s.instruction, s.reason) for s in result.selected] == [
        (celiac, Reason.constraint_domain)
    ]
    expected_rank = 0.05 + DOMAIN_WEIGHT * 0.4 + CONSTRAINT_WEIGHT
    assert abs(result.selected[0].score - expected_rank) < 1e-9


def test_domain_affinity_and_request_keys_rank() -> None:
    near, far = item("near"), item("far")
    sims = {near.row_id: Similarity(0.3, domain=0.5), far.row_id: Similarity(0.35, domain=-0.2)}
    assert [s.instruction for s in select([far, near], sims, floor=0.0).selected] == [near, far]
    keyed = item("keyed")
    by_request = select([keyed], {keyed.row_id: Similarity(0.1, request=0.6)}, floor=0.5)
    assert [(s.instruction, s.reason) for s in by_request.selected] == [
        (keyed, Reason.matched_request)
    ]


def test_policy_comes_from_settings_unless_the_request_sets_it(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        selection_threshold=0.2,
        selection_top_k=7,
        selection_whole_profile=False,
        token_budget=300,
    )
    policy = settings.context_options().policy
    assert policy == SelectionPolicy(token_budget=300, max_items=7, floor=0.2, whole_profile=False)
    asked = settings.context_options(threshold=0.0, top_k=3, token_budget=100, whole_profile=True)
    assert asked.policy == SelectionPolicy(
        token_budget=100, max_items=3, floor=0.0, whole_profile=True
    )
    assert Settings(data_dir=tmp_path).context_options().policy.whole_profile is True


@given(
    scores=st.lists(st.floats(-1, 1), min_size=0, max_size=30),
    always=st.lists(st.booleans(), min_size=30, max_size=30),
    costs=st.lists(st.integers(1, 60), min_size=30, max_size=30),
    budget=st.integers(16, 400),
    cap=st.integers(1, 10),
    floor=st.floats(0, 1),
    whole=st.booleans(),
)
def test_selection_invariants(scores, always, costs, budget, cap, floor, whole) -> None:
    cands = [item(str(i), always=always[i]) for i in range(len(scores))]
    sims = {c.row_id: Similarity(s) for c, s in zip(cands, scores, strict=True)}
    price = {c.row_id: costs[i] for i, c in enumerate(cands)}
    result = select(
        cands,
        sims,
        floor=floor,
        cap=cap,
        budget=budget,
        whole=whole,
        cost=lambda c: price[c.row_id],
    )
    chosen = [s.instruction for s in result.selected]
    assert result.tokens == sum(price[c.row_id] for c in chosen) <= budget
    conditional = [s for s in result.selected if s.reason != Reason.always_on]
    assert len(conditional) <= cap
    # below the floor only for a small profile
    assert all(s.score >= floor or s.reason == Reason.whole_profile for s in conditional)
    assert len(set(map(id, chosen))) == len(chosen)
    # conditional items come in rank order
    assert [s.score for s in conditional] == sorted((s.score for s in conditional), reverse=True)
    for cand in cands:
        if cand.always_on:
            assert cand in chosen or any(
                o.instruction is cand and o.reason == OmitReason.token_budget
                for o in result.omitted
            )
    small = whole and sum(not c.always_on for c in cands) <= cap
    # below the floor is reported only when a small profile did not fit the budget
    assert all(o.score >= floor or o.instruction.always_on or small for o in result.omitted)
    if any(s.reason == Reason.whole_profile for s in conditional):
        # only a small profile goes in past the floor, and only the budget leaves any out
        assert small
        left = {c.row_id for c in cands if not c.always_on} - {c.row_id for c in chosen}
        omitted = {o.instruction.row_id: o.reason for o in result.omitted}
        assert all(omitted.get(row) == OmitReason.token_budget for row in left)
