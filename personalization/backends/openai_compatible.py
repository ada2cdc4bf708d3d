"""Any OpenAI-compatible chat server (vLLM, TGI, llama.cpp server, Ollama, ...).

Timeouts on connect and read, so a dead server is a fast 503, never a hang. 429 and
5xx answers and connection failures are retried with exponential backoff (honouring
Retry-After); other 4xx are the request's fault and are not retried. A stream is
retried only until its first byte: after that, retrying would repeat text."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator, Sequence
from typing import Any

import httpx

from personalization.backends import (
    BackendFailed,
    BackendRejected,
    BackendUnavailable,
    Completion,
    Delta,
    GenerationSettings,
)
from personalization.messages import ChatMessage

_RETRY_STATUSES = {408, 409, 429, 500, 502, 503, 504}
_REJECTED_STATUSES = {400, 413, 422}  # the request's content; 401/403/404 are our config


class _Unusable(ValueError):
    """The reply does not have the documented shape."""


def _object(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Unusable(f"{what} is {type(value).__name__}, not an object")
    return value


def _first_choice(data: dict[str, Any]) -> dict[str, Any] | None:
    choices = data.get("choices")
    if choices is None or choices == []:
        return None
    if not isinstance(choices, list):
        raise _Unusable(f"choices is {type(choices).__name__}, not a list")
    return _object(choices[0], "choices[0]")


def _text(value: object, what: str) -> str:
    """Text or null (a tool-call reply has null content); anything else is malformed."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _Unusable(f"{what} is {type(value).__name__}, not a string")
    return value


def _count(usage: dict[str, Any], key: str) -> int:
    value = usage.get(key) or 0
    if not isinstance(value, int) or isinstance(value, bool):
        raise _Unusable(f"usage.{key} is {type(value).__name__}, not an integer")
    return value


def _optional_object(value: object, what: str) -> dict[str, Any] | None:
    return None if value is None else _object(value, what)


def _parse_completion(body: bytes, model: str) -> Completion:
    """Every field is checked for its type: a server that sends `"content": 12345` or a
    null message is malformed (BackendFailed, a 502 or a failed inference attempt), never
    an AttributeError somewhere downstream. The message, logprobs and usage objects are
    kept as sent, for the app."""
    try:
        data = _object(json.loads(body), "the body")
        choice = _first_choice(data)
        if choice is None:
            raise _Unusable("there are no choices")
        message = _object(choice.get("message"), "choices[0].message")
        tool_calls = message.get("tool_calls")
        if tool_calls is not None and not isinstance(tool_calls, list):
            raise _Unusable(f"tool_calls is {type(tool_calls).__name__}, not a list")
        usage = _object(data.get("usage") or {}, "usage")
        return Completion(
            text=_text(message.get("content"), "the message content"),
            finish_reason=_text(choice.get("finish_reason"), "finish_reason") or "stop",
            model=_text(data.get("model"), "model") or model,
            prompt_tokens=_count(usage, "prompt_tokens"),
            completion_tokens=_count(usage, "completion_tokens"),
            message=message,
            logprobs=_optional_object(choice.get("logprobs"), "choices[0].logprobs"),
            usage=usage or None,
        )
    except ValueError as exc:  # _Unusable, or not JSON at all
        raise BackendFailed(f"model server sent an unusable body: {exc}") from exc


def _parse_chunk(payload: str) -> Delta | None:
    """One SSE chunk as a Delta: its text, finish reason, the delta's other members
    (`tool_calls` pieces, kept as sent), logprobs, and usage (the final chunk of a stream
    asked for `include_usage` has usage and no choices). None for an empty chunk."""
    try:
        data = _object(json.loads(payload), "the chunk")
        usage = _object(data.get("usage") or {}, "usage")
        choice = _first_choice(data)
        if choice is None:
            return Delta(usage=usage) if usage else None
        delta = _object(choice.get("delta") or {}, "choices[0].delta")
        tool_calls = delta.get("tool_calls")
        if tool_calls is not None and not isinstance(tool_calls, list):
            raise _Unusable(f"delta.tool_calls is {type(tool_calls).__name__}, not a list")
        fields = {
            key: value
            for key, value in delta.items()
            if key not in ("role", "content") and value is not None
        }
        piece = Delta(
            text=_text(delta.get("content"), "the delta content"),
            finish_reason=_text(choice.get("finish_reason"), "finish_reason") or None,
            usage=usage,
            fields=fields,
            logprobs=_optional_object(choice.get("logprobs"), "choices[0].logprobs"),
        )
        if piece.text or piece.finish_reason or fields or usage or piece.logprobs:
            return piece
        return None
    except ValueError as exc:
        raise BackendFailed(f"model server sent an unusable chunk: {exc}") from exc


class OpenAICompatibleBackend:
    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        connect_timeout_s: float = 5.0,
        max_retries: int = 2,
        backoff_s: float = 0.5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
            transport=transport,
        )
        self._model = model
        self._max_retries = max_retries
        self._backoff_s = backoff_s

    @property
    def model_id(self) -> str:
        return self._model

    def close(self) -> None:
        self._client.close()

    def _body(
        self, messages: Sequence[ChatMessage], settings: GenerationSettings, stream: bool
    ) -> dict[str, Any]:
        """The app's own fields (`settings.passthrough`) go last and unchanged: a stop
        string stays a string, `max_completion_tokens` is not turned into `max_tokens`.
        `stream_options` only means something on a stream (OpenAI refuses it elsewhere)."""
        body: dict[str, Any] = {
            "model": self._model,
            "messages": [m.as_openai() for m in messages],
            "temperature": settings.temperature,
            "top_p": settings.top_p,
        }
        if "max_completion_tokens" not in settings.passthrough:
            body["max_tokens"] = settings.max_tokens
        if settings.stop:
            body["stop"] = list(settings.stop)
        if settings.seed is not None:
            body["seed"] = settings.seed
        body.update(settings.passthrough)
        if not stream:
            body.pop("stream_options", None)
        body["stream"] = stream
        return body

    def _wait(self, attempt: int, response: httpx.Response | None) -> None:
        delay = self._backoff_s * (2**attempt)
        if response is not None:
            with contextlib.suppress(ValueError):
                delay = max(delay, min(float(response.headers.get("retry-after", 0)), 30.0))
        time.sleep(delay)

    def _send(self, body: dict[str, Any]) -> httpx.Response:
        """POST with retries; returns an open response with a 2xx status."""
        last: str = ""
        for attempt in range(self._max_retries + 1):
            response: httpx.Response | None = None
            try:
                request = self._client.build_request("POST", "/chat/completions", json=body)
                response = self._client.send(request, stream=True)
            except httpx.TimeoutException as exc:
                last = f"timed out ({type(exc).__name__})"
            except httpx.TransportError as exc:
                last = f"unreachable ({type(exc).__name__})"
            else:
                if response.status_code < 300:
                    return response
                response.read()
                response.close()
                if response.status_code not in _RETRY_STATUSES:
                    failure = (
                        BackendRejected
                        if response.status_code in _REJECTED_STATUSES
                        else BackendFailed
                    )
                    raise failure(
                        f"model server answered {response.status_code}: {response.text[:300]}"
                    )
                last = f"answered {response.status_code}"
            if attempt < self._max_retries:
                self._wait(attempt, response)
        raise BackendUnavailable(f"model server {last} after {self._max_retries + 1} attempts")

    def complete(self, messages: Sequence[ChatMessage], settings: GenerationSettings) -> Completion:
        response = self._send(self._body(messages, settings, stream=False))
        try:
            response.read()
            return _parse_completion(response.content, self._model)
        except httpx.HTTPError as exc:
            raise BackendUnavailable(f"model server connection broke: {exc}") from exc
        finally:
            response.close()

    def stream(
        self, messages: Sequence[ChatMessage], settings: GenerationSettings
    ) -> Iterator[Delta]:
        response = self._send(self._body(messages, settings, stream=True))
        try:
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    return
                delta = _parse_chunk(payload)
                if delta is not None:
                    yield delta
        except httpx.HTTPError as exc:
            raise BackendUnavailable(f"model server stream broke: {exc}") from exc
        finally:
            response.close()
