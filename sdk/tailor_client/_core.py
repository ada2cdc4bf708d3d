"""How a call is described, retried and read: shared by both clients."""

from __future__ import annotations

import json as jsonlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, NoReturn, TypeVar

from tailor_client import types as t
from tailor_client.errors import error_from_body, parse_retry_after

T = TypeVar("T")


def _json(body: Any) -> Any:
    return body


def no_body(_body: Any) -> None:
    return None


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    method: str
    path: str
    parse: Callable[[Any], T] = _json
    ok: tuple[int, ...] = (200,)
    json: Any = None
    params: Mapping[str, str | int] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    retry: bool = True  # 429/503 are retried (the service did nothing); /readyz is not


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long to ride out 429 and 503: the server's `Retry-After` (else a doubling
    backoff from `backoff_s`), each wait capped at `max_wait_s`, at most `max_retries`
    times. The service answers these before doing any work, so a retried POST is
    never applied twice."""

    max_retries: int = 4
    max_wait_s: float = 30.0
    backoff_s: float = 0.5

    def wait_s(self, call: Call[Any], status: int, retry_after: str | None, attempt: int) -> float:
        """Seconds to wait before trying again, or -1 to give up."""
        if not call.retry or status not in (429, 503) or attempt >= self.max_retries:
            return -1.0
        told = parse_retry_after(retry_after)
        wanted = told if told is not None else self.backoff_s * 2**attempt
        return min(self.max_wait_s, wanted)


def finish(call: Call[T], status: int, content: bytes, retry_after: str | None) -> T:
    """The parsed answer, or the typed error for it."""
    if status not in call.ok:
        raise_error(status, content, retry_after)
    return call.parse(jsonlib.loads(content) if content else None)


def raise_error(status: int, content: bytes, retry_after: str | None) -> NoReturn:
    try:
        body = jsonlib.loads(content) if content else None
    except ValueError:
        body = None
    text = content.decode(errors="replace")
    raise error_from_body(status, body, text, parse_retry_after(retry_after))


# --- server-sent events -----------------------------------------------------------------------


def sse_line(line: str) -> t.ChatCompletionChunk | Literal["done"] | None:
    """One line of a chat stream: a chunk, "done" at `[DONE]`, or None for a line that
    carries nothing. An `error` event (the model failed after the status line went out)
    is raised as the typed error it names, with the 200 that was sent."""
    if not line.startswith("data:"):
        return None
    data = line[len("data:") :].strip()
    if data == "[DONE]":
        return "done"
    if not data:
        return None
    event = jsonlib.loads(data)
    if isinstance(event, dict) and "error" in event:
        raise error_from_body(200, event)
    chunk: t.ChatCompletionChunk = event
    return chunk
