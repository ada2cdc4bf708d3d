from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from personalization.selection import (
    OmitReason,
    Reason,
    Similarity,
    select_applicable_instructions,
)
from store.instructions import ActiveInstruction


def item(text: str, *, always: bool = False, cond: str | None = None) -> ActiveInstruction:
    return ActiveInstruction(uuid.uuid4(), uuid.uuid4(), 1, text, cond, always)


def select(cands, sims, *, threshold=0.5, top_k=10, budget=1000, cost=lambda _c: 10):
    return select_applicable_instructions(
        cands, sims, threshold=threshold, top_k=top_k, token_budget=budget, cost=cost
    )


def test_always_on_first_then_matches_by_score_threshold_applied() -> None:
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
    assert result.omitted == []
    assert result.tokens == 30


def test_top_k_limits_conditional_only() -> None:
    always = [item(f"a{i}", always=True) for i in range(3)]
    cond = [item(f"c{i}") for i in range(5)]
    sims = {c.row_id: Similarity(0.9 - i * 0.01) for i, c in enumerate(cond)}
    result = select([*always, *cond], sims, top_k=2)
    assert [s.instruction for s in result.selected] == [*always, cond[0], cond[1]]
    assert {o.instruction.text for o in result.omitted} == {"c2", "c3", "c4"}
    assert all(o.reason == OmitReason.top_k for o in result.omitted)


def test_budget_skips_what_does_not_fit_but_keeps_filling() -> None:
    big, small = item("big"), item("small")
    sims = {big.row_id: Similarity(0.9), small.row_id: Similarity(0.8)}
    cost = {big.row_id: 80, small.row_id: 15}
    result = select([big, small], sims, budget=90, cost=lambda c: cost[c.row_id])
    assert [s.instruction for s in result.selected] == [big]
    assert [(o.instruction, o.reason) for o in result.omitted] == [(small, OmitReason.token_budget)]


def test_candidate_without_similarity_never_matches() -> None:
    lonely = item("no vector")
    assert select([lonely], {}, threshold=0.0).selected == []


@given(
    scores=st.lists(st.floats(-1, 1), min_size=0, max_size=30),
    always=st.lists(st.booleans(), min_size=30, max_size=30),
    costs=st.lists(st.integers(1, 60), min_size=30, max_size=30),
    budget=st.integers(16, 400),
    top_k=st.integers(1, 10),
    threshold=st.floats(0, 1),
)
def test_selection_invariants(scores, always, costs, budget, top_k, threshold) -> None:
    cands = [item(str(i), always=always[i]) for i in range(len(scores))]
    sims = {c.row_id: Similarity(s) for c, s in zip(cands, scores, strict=True)}
    price = {c.row_id: costs[i] for i, c in enumerate(cands)}
    result = select(
        cands, sims, threshold=threshold, top_k=top_k, budget=budget, cost=lambda c: price[c.row_id]
    )
    chosen = [s.instruction for s in result.selected]
    assert result.tokens == sum(price[c.row_id] for c in chosen) <= budget
    assert sum(1 for s in result.selected if s.reason != Reason.always_on) <= top_k
    assert all(s.score >= threshold for s in result.selected if s.reason != Reason.always_on)
    assert len(set(map(id, chosen))) == len(chosen)
    # every always-on item is either selected or reported as over budget
    for cand in cands:
        if cand.always_on:
            assert cand in chosen or any(
                o.instruction is cand and o.reason == OmitReason.token_budget
                for o in result.omitted
            )
    # nothing below the threshold is reported at all
    assert all(o.score >= threshold or o.instruction.always_on for o in result.omitted)
