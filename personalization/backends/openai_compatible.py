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
    BackendUnavailable,
    Completion,
    Delta,
    GenerationSettings,
)
from personalization.messages import ChatMessage

_RETRY_STATUSES = {408, 409, 429, 500, 502, 503, 504}


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
        body: dict[str, Any] = {
            "model": self._model,
            "messages": [m.as_openai() for m in messages],
            "max_tokens": settings.max_tokens,
            "temperature": settings.temperature,
            "top_p": settings.top_p,
            "stream": stream,
        }
        if settings.stop:
            body["stop"] = list(settings.stop)
        if settings.seed is not None:
            body["seed"] = settings.seed
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
                    raise BackendFailed(
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
            data = response.json()
            choice = data["choices"][0]
            usage = data.get("usage") or {}
            return Completion(
                text=choice["message"].get("content") or "",
                finish_reason=choice.get("finish_reason") or "stop",
                model=str(data.get("model") or self._model),
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                completion_tokens=int(usage.get("completion_tokens") or 0),
            )
        except httpx.HTTPError as exc:
            raise BackendUnavailable(f"model server connection broke: {exc}") from exc
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise BackendFailed(f"model server sent an unusable body: {exc}") from exc
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
                try:
                    chunk = json.loads(payload)
                    choices = chunk.get("choices") or []
                    if not choices:
                        continue
                    text = (choices[0].get("delta") or {}).get("content") or ""
                    finish = choices[0].get("finish_reason")
                except (ValueError, AttributeError) as exc:
                    raise BackendFailed(f"model server sent an unusable chunk: {exc}") from exc
                if text or finish:
                    yield Delta(text=text, finish_reason=finish)
        except httpx.HTTPError as exc:
            raise BackendUnavailable(f"model server stream broke: {exc}") from exc
        finally:
            response.close()
