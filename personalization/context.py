"""One chat turn's context: embed the query once, select the applicable standing
instructions, retrieve the nearest preference examples, and compose everything into a
marked data block within the token budget (instructions first: the user stated them)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from personalization.applicability import ApplicabilityModel
from personalization.candidates import InstructionCandidates
from personalization.cipher import AggregatedPreference, CipherRetriever
from personalization.compose import ProfileItem, new_marker, render_item, render_profile_block
from personalization.embedder import Embedder, Vectors
from personalization.messages import ChatMessage
from personalization.selection import (
    Selection,
    SelectionPolicy,
)
from personalization.text import estimate_tokens
from store.errors import InvalidInput
from store.examples import COLLECTION as EXAMPLES
from store.examples import ExampleRepository
from store.index_manager import IndexManager
from store.instructions import (
    ActiveInstruction,
    InstructionRepository,
)
from store.models import InstructionKind, PreferenceExample
from store.scope import UserScope

QUERY_CHARS = 2000  # MiniLM reads 256 word pieces; more text only costs tokenizer time
EXAMPLE_FIELD_CHARS = 400  # each side of an example, so a few fit any sane budget


@dataclass(frozen=True, slots=True)
class ContextOptions:
    """A turn's policy (personalization/selection.py): `threshold` is the floor an
    instruction's evidence needs once the profile does not fit whole, `top_k` the
    per-turn cap on conditional instructions."""

    threshold: float
    top_k: int
    token_budget: int
    examples_k: int = 4
    cipher_k: int = 5
    whole_profile: bool = True

    @property
    def policy(self) -> SelectionPolicy:
        return SelectionPolicy(
            token_budget=self.token_budget,
            max_items=self.top_k,
            floor=self.threshold,
            whole_profile=self.whole_profile,
        )


@dataclass(frozen=True, slots=True)
class UsedExample:
    example: PreferenceExample
    score: float


@dataclass(frozen=True, slots=True)
class TurnContext:
    query: str
    query_embedding: Vectors
    selection: Selection
    examples: list[UsedExample] = field(default_factory=list)
    inferred: AggregatedPreference | None = None
    system_message: str | None = None
    tokens: int = 0


def turn_query(messages: Sequence[ChatMessage]) -> str:
    """The last user message is what this turn asks; earlier turns were answered."""
    for message in reversed(messages):
        if message.role == "user" and message.content.strip():
            return message.content.strip()[:QUERY_CHARS]
    raise InvalidInput("messages must contain a non-empty user message", code="no_user_message")


def _clip(text: str) -> str:
    return text if len(text) <= EXAMPLE_FIELD_CHARS else text[: EXAMPLE_FIELD_CHARS - 1] + "…"


def instruction_item(instruction: ActiveInstruction) -> ProfileItem:
    """A constraint says so: the model should treat it as a requirement, not a taste."""
    return _instruction_item(
        _applies(instruction), instruction.kind == InstructionKind.constraint, instruction.text
    )


def _applies(instruction: ActiveInstruction) -> str:
    return "always" if instruction.always_on else (instruction.applies_when or "when relevant")


def _instruction_item(applies: str, constraint: bool, text: str) -> ProfileItem:
    fields = {"applies": applies, "text": text}
    if constraint:
        fields = {"applies": applies, "kind": "constraint", "text": text}
    return ProfileItem("standing_instruction", fields)


@lru_cache(maxsize=65536)
def _instruction_cost(applies: str, constraint: bool, text: str) -> int:
    """Every candidate is priced on every turn (a whole profile of 100 items: 100 JSON
    renderings); the price depends on these three values only, so it is remembered."""
    return _cost(_instruction_item(applies, constraint, text))


def instruction_cost(instruction: ActiveInstruction) -> int:
    """Tokens the instruction's line takes in the block."""
    return _instruction_cost(
        _applies(instruction), instruction.kind == InstructionKind.constraint, instruction.text
    )


def example_item(example: PreferenceExample) -> ProfileItem:
    return ProfileItem(
        "preference_example",
        {
            "prompt": _clip(example.prompt),
            "preferred": _clip(example.chosen),
            "not_preferred": _clip(example.rejected),
        },
    )


def inferred_item(inferred: AggregatedPreference) -> ProfileItem:
    return ProfileItem(
        "inferred_preference",
        {"text": inferred.text, "learned_from": f"{len(inferred.edit_ids)} earlier edit(s)"},
    )


def _cost(item: ProfileItem) -> int:
    return estimate_tokens(render_item(item))


class ContextBuilder:
    def __init__(
        self,
        embedder: Embedder,
        instructions: InstructionRepository,
        examples: ExampleRepository,
        index: IndexManager,
        cipher: CipherRetriever | None = None,
        applicability: ApplicabilityModel | None = None,
    ) -> None:
        self._applicability = applicability
        self._embedder = embedder
        self._instructions = instructions
        self._examples = examples
        self._index = index
        self._cipher = cipher
        self._candidates = InstructionCandidates(instructions, index, applicability)

    @property
    def embedder_id(self) -> str:
        return self._embedder.model_id

    @property
    def embedder_dim(self) -> int:
        return self._embedder.dim

    def _nearest_examples(
        self, scope: UserScope, query: Vectors, k: int, budget: int
    ) -> tuple[list[UsedExample], int]:
        if k == 0:
            return [], 0
        hits = self._index.cache.search(scope.user_id, EXAMPLES, query, k=k)
        rows = self._examples.by_ids(scope, [h.row_id for h in hits])
        score = {h.row_id: h.score for h in hits}
        used: list[UsedExample] = []
        spent = 0
        for row in rows:
            price = _cost(example_item(row))
            if spent + price > budget:
                continue
            spent += price
            used.append(UsedExample(row, score[row.id]))
        return used, spent

    def build(
        self,
        scope: UserScope,
        messages: Sequence[ChatMessage],
        options: ContextOptions,
        *,
        stamp: int | None = None,
    ) -> TurnContext:
        """`stamp`: the user's latest change sequence, when the caller read it with the
        user (UserRepository.resolve_with_stamp); else it is read here."""
        self._index.require_ready()
        query = turn_query(messages)
        query_embedding = self._embedder.embed([query])[0]
        # Another replica may have written this user's profile since this one cached
        # it: one indexed read says so, and the user's vectors are reloaded first.
        self._index.ensure_fresh(scope.user_id, latest=stamp)
        selection = self._candidates.select(
            scope, query_embedding, options.policy, instruction_cost
        )
        items = [instruction_item(s.instruction) for s in selection.selected]
        spent = selection.tokens
        inferred = None
        if self._cipher is not None:
            inferred = self._cipher.retrieve(scope, query_embedding, options.cipher_k)
            if inferred is not None:
                price = _cost(inferred_item(inferred))
                if spent + price <= options.token_budget:
                    items.append(inferred_item(inferred))
                    spent += price
                else:
                    inferred = None
        examples, example_tokens = self._nearest_examples(
            scope, query_embedding, options.examples_k, options.token_budget - spent
        )
        items += [example_item(e.example) for e in examples]
        return TurnContext(
            query=query,
            query_embedding=query_embedding,
            selection=selection,
            examples=examples,
            inferred=inferred,
            system_message=render_profile_block(items, new_marker()) if items else None,
            tokens=spent + example_tokens,
        )
