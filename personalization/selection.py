"""Which standing instructions apply to this turn (NLSI: selection is the hard part).

Always-on instructions apply to every turn. A conditional one applies when the turn
is similar enough to its text or to its "applies when" condition; the condition
usually describes the situation better than the instruction itself ("when I ask for
a plan" vs "use bullet points"), so both are scored and the better match counts.
Everything is bounded by a token budget: always-on first, then by score."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from store.instructions import ActiveInstruction


class Reason(StrEnum):
    always_on = "always_on"
    matched_condition = "matched_condition"
    matched_text = "matched_text"


class OmitReason(StrEnum):
    token_budget = "token_budget"  # noqa: S105 (a reason, not a secret)
    top_k = "top_k"


@dataclass(frozen=True, slots=True)
class Similarity:
    text: float
    condition: float | None = None

    def best(self) -> tuple[float, Reason]:
        if self.condition is not None and self.condition >= self.text:
            return self.condition, Reason.matched_condition
        return self.text, Reason.matched_text


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


def select_applicable_instructions(
    candidates: Sequence[ActiveInstruction],
    similarity: Mapping[uuid.UUID, Similarity],
    *,
    threshold: float,
    top_k: int,
    token_budget: int,
    cost: Callable[[ActiveInstruction], int],
) -> Selection:
    """`similarity` is keyed by version row id; a candidate without one cannot match."""
    always = [Selected(c, 1.0, Reason.always_on) for c in candidates if c.always_on]
    matched: list[Selected] = []
    for candidate in candidates:
        if candidate.always_on or candidate.row_id not in similarity:
            continue
        score, reason = similarity[candidate.row_id].best()
        if score >= threshold:
            matched.append(Selected(candidate, score, reason))
    matched.sort(key=lambda s: (-s.score, str(s.instruction.instruction_id)))

    selected: list[Selected] = []
    omitted: list[Omitted] = []
    spent = 0
    for rank, item in enumerate([*always, *matched]):
        if item.reason != Reason.always_on and rank - len(always) >= top_k:
            omitted.append(Omitted(item.instruction, item.score, OmitReason.top_k))
            continue
        price = cost(item.instruction)
        if spent + price > token_budget:
            omitted.append(Omitted(item.instruction, item.score, OmitReason.token_budget))
            continue
        spent += price
        selected.append(item)
    return Selection(selected=selected, omitted=omitted, tokens=spent)
