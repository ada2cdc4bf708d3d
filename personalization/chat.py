"""A personalized chat turn: compose this user's profile for the turn, place it after
the app's own system prompt (so the app's rules come first and win), call the model."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from personalization.backends import (
    BackendFailed,
    Completion,
    Delta,
    GenerationSettings,
    ModelBackend,
)
from personalization.context import ContextBuilder, ContextOptions, TurnContext
from personalization.messages import ChatMessage
from personalization.text import estimate_tokens
from store.errors import InvalidInput
from store.scope import UserScope

_LEADING_ROLES = {"system", "developer"}


def with_profile(messages: Sequence[ChatMessage], profile: str | None) -> list[ChatMessage]:
    """Insert the profile block right after the leading system/developer messages."""
    out = list(messages)
    if not profile:
        return out
    at = 0
    while at < len(out) and out[at].role in _LEADING_ROLES:
        at += 1
    out.insert(at, ChatMessage(role="system", content=profile))
    return out


@dataclass(frozen=True, slots=True)
class PreparedChat:
    messages: list[ChatMessage]
    turn: TurnContext


class ChatService:
    def __init__(
        self, context: ContextBuilder, backend: ModelBackend, *, context_window: int | None
    ) -> None:
        self._context = context
        self._backend = backend
        self._context_window = context_window

    @property
    def model_id(self) -> str:
        return self._backend.model_id

    def prepare(
        self,
        scope: UserScope,
        messages: Sequence[ChatMessage],
        options: ContextOptions,
        settings: GenerationSettings,
    ) -> PreparedChat:
        turn = self._context.build(scope, messages, options)
        prepared = with_profile(messages, turn.system_message)
        if self._context_window is not None:
            needed = sum(estimate_tokens(m.content) + 4 for m in prepared) + settings.max_tokens
            if needed > self._context_window:
                raise InvalidInput(
                    f"messages plus max_tokens need about {needed} tokens; the model's context "
                    f"window is {self._context_window}",
                    code="context_too_long",
                )
        return PreparedChat(messages=prepared, turn=turn)

    def complete(self, prepared: PreparedChat, settings: GenerationSettings) -> Completion:
        return self._backend.complete(prepared.messages, settings)

    def stream(self, prepared: PreparedChat, settings: GenerationSettings) -> Iterator[Delta]:
        """Starts the generation before returning, so a backend that is down fails here
        (as a clean 502/503), not after the response headers have gone out."""
        deltas = self._backend.stream(prepared.messages, settings)
        try:
            first = next(deltas)
        except StopIteration:
            raise BackendFailed("the model produced an empty stream") from None

        def rest() -> Iterator[Delta]:
            yield first
            yield from deltas

        return rest()
