"""The `ModelBackend` port: one small protocol, one adapter file per kind of backend
(the embedded GGUF model, any OpenAI-compatible server)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from personalization.messages import ChatMessage
from store.errors import Overloaded, TailorError


class BackendUnavailable(TailorError):
    """The model could not be reached or kept failing (after retries): retry later."""

    code = "backend_unavailable"


class BackendFailed(TailorError):
    """The model answered with something unusable (a 4xx, a malformed body)."""

    code = "backend_error"


class BackendBusy(Overloaded):
    """Too many generations are waiting already: the caller should back off."""

    code = "model_busy"


@dataclass(frozen=True, slots=True)
class GenerationSettings:
    max_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 0.95
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    finish_reason: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Delta:
    """One streamed piece: text, and on the last one the finish reason."""

    text: str = ""
    finish_reason: str | None = None
    usage: dict[str, int] = field(default_factory=dict)


class ModelBackend(Protocol):
    @property
    def model_id(self) -> str: ...

    def complete(
        self, messages: Sequence[ChatMessage], settings: GenerationSettings
    ) -> Completion: ...

    def stream(
        self, messages: Sequence[ChatMessage], settings: GenerationSettings
    ) -> Iterator[Delta]: ...
