"""The `ModelBackend` port: one small protocol, one adapter file per kind of backend
(the embedded GGUF model, any OpenAI-compatible server)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from personalization.messages import ChatMessage
from store.errors import InvalidInput, Overloaded, TailorError


class BackendUnavailable(TailorError):
    """The model could not be reached or kept failing (after retries): retry later."""

    code = "backend_unavailable"


class BackendFailed(TailorError):
    """The model answered with something unusable (a 4xx, a malformed body)."""

    code = "backend_error"


class BackendRejected(BackendFailed):
    """The model refused this request as invalid (a 400 or 422: a tool schema it cannot
    take, a prompt over its window). Retrying the same request cannot help, so the app
    gets a 4xx with the server's reason, not a 502 its client would retry."""

    code = "backend_rejected_request"


class BackendBusy(Overloaded):
    """Too many generations are waiting already: the caller should back off."""

    code = "model_busy"


class UnsupportedParameter(InvalidInput):
    """The configured model cannot honour a parameter the app sent (422): answering as if
    it had would silently break the app's contract (no JSON, no tool call)."""

    code = "unsupported_parameter"

    def __init__(self, parameter: str, why: str) -> None:
        super().__init__(f"`{parameter}` is not supported by this model backend: {why}")
        self.parameter = parameter


@dataclass(frozen=True, slots=True)
class GenerationSettings:
    """`passthrough` holds the app's other OpenAI request fields (tools, response_format,
    logprobs, ...), exactly as sent: an OpenAI-compatible server receives them unchanged,
    the embedded model honours those it can and refuses the rest."""

    max_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 0.95
    stop: tuple[str, ...] = ()
    seed: int | None = None
    passthrough: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Completion:
    """`message`, `logprobs` and `usage` are the server's own objects, returned to the
    app unchanged (tool calls, refusals, token details); `text` and the counts are what
    Tailor's own callers read."""

    text: str
    finish_reason: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    message: Mapping[str, Any] | None = None
    logprobs: Mapping[str, Any] | None = None
    usage: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Delta:
    """One streamed piece: text, and on the last one the finish reason. `fields` are the
    delta's other members as the server sent them (`tool_calls` pieces, `refusal`);
    `usage` is set on the piece that carried the stream's usage."""

    text: str = ""
    finish_reason: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    fields: Mapping[str, Any] = field(default_factory=dict)
    logprobs: Mapping[str, Any] | None = None


class ModelBackend(Protocol):
    @property
    def model_id(self) -> str: ...

    def complete(
        self, messages: Sequence[ChatMessage], settings: GenerationSettings
    ) -> Completion: ...

    def stream(
        self, messages: Sequence[ChatMessage], settings: GenerationSettings
    ) -> Iterator[Delta]: ...
