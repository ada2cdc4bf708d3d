"""One chat turn's context: embed the query once, select the applicable standing
instructions, and compose them into a marked data block within the token budget."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from personalization.compose import ProfileItem, new_marker, render_item, render_profile_block
from personalization.embedder import Embedder, Vectors
from personalization.messages import ChatMessage
from personalization.selection import (
    Selection,
    Similarity,
    select_applicable_instructions,
)
from personalization.text import estimate_tokens
from store.errors import InvalidInput
from store.index_manager import IndexManager
from store.instructions import (
    COLLECTION,
    ROLE_CONDITION,
    ActiveInstruction,
    InstructionRepository,
)
from store.scope import UserScope

QUERY_CHARS = 2000  # MiniLM reads 256 word pieces; more text only costs tokenizer time


@dataclass(frozen=True, slots=True)
class ContextOptions:
    threshold: float
    top_k: int
    token_budget: int


@dataclass(frozen=True, slots=True)
class TurnContext:
    query: str
    query_embedding: Vectors
    selection: Selection
    system_message: str | None


def turn_query(messages: Sequence[ChatMessage]) -> str:
    """The last user message is what this turn asks; earlier turns were answered."""
    for message in reversed(messages):
        if message.role == "user" and message.content.strip():
            return message.content.strip()[:QUERY_CHARS]
    raise InvalidInput("messages must contain a non-empty user message", code="no_user_message")


def as_profile_item(instruction: ActiveInstruction) -> ProfileItem:
    applies = "always" if instruction.always_on else (instruction.applies_when or "when relevant")
    return ProfileItem(kind="standing_instruction", text=instruction.text, applies=applies)


def _cost(instruction: ActiveInstruction) -> int:
    return estimate_tokens(render_item(as_profile_item(instruction)))


class ContextBuilder:
    def __init__(
        self, embedder: Embedder, instructions: InstructionRepository, index: IndexManager
    ) -> None:
        self._embedder = embedder
        self._instructions = instructions
        self._index = index

    @property
    def embedder_id(self) -> str:
        return self._embedder.model_id

    @property
    def embedder_dim(self) -> int:
        return self._embedder.dim

    def build(
        self, scope: UserScope, messages: Sequence[ChatMessage], options: ContextOptions
    ) -> TurnContext:
        self._index.require_ready()
        query = turn_query(messages)
        query_embedding = self._embedder.embed([query])[0]
        candidates = self._instructions.active(scope)
        similarity: dict[uuid.UUID, Similarity] = {}
        if any(not c.always_on for c in candidates):
            for hit in self._index.cache.search(scope.user_id, COLLECTION, query_embedding):
                known = similarity.get(hit.row_id, Similarity(text=-1.0))
                similarity[hit.row_id] = (
                    Similarity(text=known.text, condition=hit.score)
                    if hit.role == ROLE_CONDITION
                    else Similarity(text=hit.score, condition=known.condition)
                )
        selection = select_applicable_instructions(
            candidates,
            similarity,
            threshold=options.threshold,
            top_k=options.top_k,
            token_budget=options.token_budget,
            cost=_cost,
        )
        system_message = None
        if selection.selected:
            items = [as_profile_item(s.instruction) for s in selection.selected]
            system_message = render_profile_block(items, new_marker())
        return TurnContext(
            query=query,
            query_embedding=query_embedding,
            selection=selection,
            system_message=system_message,
        )
