"""Which profile items a turn used, and why: one list for the chat response's
`tailor.profile_items` and for the user's record of recent turns."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from sqlalchemy.exc import SQLAlchemyError

from personalization.context import TurnContext
from store.scope import UserScope

log = logging.getLogger("tailor")

ItemKind = Literal["standing_instruction", "preference_example", "inferred_preference"]
MESSAGE_CHARS = 500  # a recorded user message (only when the operator opts in) is clipped


@dataclass(frozen=True, slots=True)
class UsedItem:
    id: uuid.UUID
    kind: ItemKind
    version: int | None  # None for an aggregated inferred preference
    reason: str
    score: float | None  # None where no similarity applies

    def as_json(self) -> dict[str, Any]:
        # Field by field, not `dataclasses.asdict`: that deep-copies every value and
        # cost a /context turn about 0.5 ms for its ~14 items, on every turn.
        return {
            "id": str(self.id),
            "kind": self.kind,
            "version": self.version,
            "reason": self.reason,
            "score": self.score,
        }


def used_items(turn: TurnContext) -> list[UsedItem]:
    instructions = [
        UsedItem(
            s.instruction.instruction_id,
            "standing_instruction",
            s.instruction.version,
            s.reason.value,
            round(s.score, 4),
        )
        for s in turn.selection.selected
    ]
    examples = [
        UsedItem(e.example.id, "preference_example", 1, "nearest_prompt", round(e.score, 4))
        for e in turn.examples
    ]
    inferred = [
        UsedItem(preference_id, "inferred_preference", None, "nearest_edit_context", None)
        for preference_id in (turn.inferred.preference_ids if turn.inferred else ())
    ]
    return instructions + examples + inferred


def recorded_message(turn: TurnContext, keep_message: bool) -> str | None:
    """The turn's query (its last user message), clipped; None unless opted in."""
    if not keep_message:
        return None
    query = turn.query
    return query if len(query) <= MESSAGE_CHARS else query[: MESSAGE_CHARS - 1] + "…"


class TurnSink(Protocol):
    """Where records go: `TurnRepository` (one transaction each) or the batching
    `TurnLogWriter` (personalization/turn_batching.py)."""

    def record(
        self,
        scope: UserScope,
        *,
        endpoint: str,
        items: Sequence[dict[str, Any]],
        message: str | None,
        keep: int,
    ) -> object: ...


class TurnRecorder:
    """Records a turn's provenance after its answer has gone out (a background task):
    a failure here is logged, never the turn's. `keep` records per user, 0 for none."""

    def __init__(self, turns: TurnSink, *, keep: int, keep_message: bool) -> None:
        self._turns = turns
        self._keep = keep
        self._keep_message = keep_message

    def record(self, scope: UserScope, endpoint: str, turn: TurnContext) -> None:
        if self._keep <= 0:
            return
        try:
            self._turns.record(
                scope,
                endpoint=endpoint,
                items=[item.as_json() for item in used_items(turn)],
                message=recorded_message(turn, self._keep_message),
                keep=self._keep,
            )
        except SQLAlchemyError as exc:  # e.g. the user was deleted meanwhile
            log.warning("turn record not written: %s", type(exc).__name__)
