"""Which standing instructions apply to this turn (NLSI: selection is the hard part).

A fixed cosine threshold misses most of what matters: MiniLM's cosine between a
question and the preference it depends on is often below 0.2 ("I'm celiac" vs "which
dishes should I try in Naples"). So selection fills a token budget in rank order:

- always-on instructions first;
- a profile whose conditional items all fit the budget and the item cap goes in whole,
  as assistants with memory do;
- a profile within the item cap that does not fit the budget goes in by rank until the
  budget is spent, with no floor: the floor must never starve a small profile (ten long
  items a few tokens over the budget lost a third of the profile to it, issue 9);
- past the cap, conditional items in rank order until the budget or the per-turn item
  cap is reached; an item goes in only if its evidence reaches a low floor.

An item's evidence is its best cosine to the turn over its keys (its text, its "applies
when" condition, its typical requests); for a constraint (allergy, diet, health, ...)
whose domain the turn is about, it is at least the turn's score for that domain: that is
how "I'm celiac" reaches "what should I eat in Rome". Its rank adds to the best cosine a
bonus for how well its domains match the turn's and one for a constraint in its domain
(weights tuned on the dev split: README, "Selection policy")."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from store.instructions import ActiveInstruction

DOMAIN_WEIGHT = 0.25  # x the turn's (centred, unit) score of the item's best domain
CONSTRAINT_WEIGHT = 0.15  # for a constraint in one of the turn's domains


class Reason(StrEnum):
    always_on = "always_on"
    constraint_domain = "constraint_domain"  # a constraint in a domain this turn is about
    matched_condition = "matched_condition"
    matched_request = "matched_request"  # one of its typical requests
    matched_text = "matched_text"
    whole_profile = "whole_profile"  # in because the profile is small, not by relevance


class OmitReason(StrEnum):
    token_budget = "token_budget"  # noqa: S105 (a reason, not a secret)
    top_k = "top_k"  # the per-turn item cap


@dataclass(frozen=True, slots=True)
class SelectionPolicy:
    token_budget: int
    max_items: int  # conditional items per turn
    floor: float  # evidence an item needs to go in when the profile does not fit whole
    whole_profile: bool = True  # a profile that fits the budget and the cap goes in whole


@dataclass(frozen=True, slots=True)
class Similarity:
    """How a candidate relates to this turn: cosines of its keys (None: it has no such
    key), how well its domains match the turn's, and, for a constraint in one of the
    turn's domains, the turn's score for that domain."""

    text: float
    condition: float | None = None
    request: float | None = None
    domain: float = 0.0
    constraint_domain: float | None = None

    def best(self) -> tuple[float, Reason]:
        score, reason = self.text, Reason.matched_text
        if self.condition is not None and self.condition >= score:
            score, reason = self.condition, Reason.matched_condition
        if self.request is not None and self.request > score:
            score, reason = self.request, Reason.matched_request
        return score, reason

    def evidence(self) -> tuple[float, Reason]:
        score, reason = self.best()
        if self.constraint_domain is not None:
            return max(score, self.constraint_domain), Reason.constraint_domain
        return score, reason

    def rank(self) -> float:
        bonus = DOMAIN_WEIGHT * self.domain
        if self.constraint_domain is not None:
            bonus += CONSTRAINT_WEIGHT
        return self.best()[0] + bonus


@dataclass(frozen=True, slots=True)
class Selected:
    instruction: ActiveInstruction
    score: float
    reason: Reason


@dataclass(frozen=True, slots=True)
class Omitted:
    instruction: ActiveInstruction
    score: float
    reason: OmitReason


@dataclass(frozen=True, slots=True)
class Selection:
    selected: list[Selected]
    omitted: list[Omitted]
    tokens: int


@dataclass(frozen=True, slots=True)
class _Ranked:
    instruction: ActiveInstruction
    rank: float
    evidence: float
    reason: Reason


def _ranked(
    candidates: Sequence[ActiveInstruction], similarity: Mapping[uuid.UUID, Similarity]
) -> list[_Ranked]:
    ranked = []
    for candidate in candidates:
        sim = similarity.get(candidate.row_id)
        if candidate.always_on or sim is None:
            continue
        evidence, reason = sim.evidence()
        ranked.append(_Ranked(candidate, sim.rank(), evidence, reason))
    ranked.sort(key=lambda r: (-r.rank, str(r.instruction.instruction_id)))
    return ranked


def select_applicable_instructions(
    candidates: Sequence[ActiveInstruction],
    similarity: Mapping[uuid.UUID, Similarity],
    policy: SelectionPolicy,
    cost: Callable[[ActiveInstruction], int],
) -> Selection:
    """`similarity` is keyed by version row id; a candidate without one cannot match.
    Items below the floor are not reported in `omitted` (on a large profile that would
    be most of it): they were not relevant, not cut."""
    selected: list[Selected] = []
    omitted: list[Omitted] = []
    spent = 0
    for candidate in candidates:
        if candidate.always_on:
            price = cost(candidate)
            if spent + price > policy.token_budget:
                omitted.append(Omitted(candidate, 1.0, OmitReason.token_budget))
                continue
            spent += price
            selected.append(Selected(candidate, 1.0, Reason.always_on))

    ranked = _ranked(candidates, similarity)
    prices = {r.instruction.row_id: cost(r.instruction) for r in ranked}
    small = policy.whole_profile and len(ranked) <= policy.max_items
    taken = 0
    for item in ranked:
        reason = item.reason
        if item.evidence < policy.floor:
            if not small:
                continue
            reason = Reason.whole_profile
        if taken >= policy.max_items:
            omitted.append(Omitted(item.instruction, item.rank, OmitReason.top_k))
            continue
        price = prices[item.instruction.row_id]
        if spent + price > policy.token_budget:
            omitted.append(Omitted(item.instruction, item.rank, OmitReason.token_budget))
            continue
        spent += price
        taken += 1
        selected.append(Selected(item.instruction, item.rank, reason))
    return Selection(selected=selected, omitted=omitted, tokens=spent)
