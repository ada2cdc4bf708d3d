"""The evaluators' view of Tailor: the public HTTP API, through a real client. The
same class drives a remote service (`--service URL`) and an in-process app
(evals/inprocess.py hands it a TestClient, which is an httpx.Client over ASGI)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from personalization.backends import Completion, Delta, GenerationSettings
from personalization.messages import ChatMessage

_BUSY = {429, 503}


class Response(Protocol):
    @property
    def status_code(self) -> int: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def content(self) -> bytes: ...
    @property
    def text(self) -> str: ...
    def json(self) -> Any: ...


class Http(Protocol):
    """What the client needs of httpx.Client; Starlette's TestClient has it too."""

    def request(self, method: str, url: str, *, json: Any = None) -> Response: ...
    def close(self) -> None: ...


class ServiceError(RuntimeError):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code


@dataclass(frozen=True, slots=True)
class ChatReply:
    text: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    profile_items: list[dict[str, Any]] = field(default_factory=list)


class TailorClient:
    def __init__(self, http: Http, *, busy_retries: int = 8) -> None:
        self._http = http
        self._busy_retries = busy_retries

    @classmethod
    def connect(cls, base_url: str, api_key: str, *, timeout_s: float = 300.0) -> TailorClient:
        return cls(
            httpx.Client(
                base_url=base_url.rstrip("/"),
                headers={"Authorization": f"Bearer {api_key}"},
                timeout=httpx.Timeout(timeout_s, connect=10.0),
            )
        )

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, *, ok: Sequence[int], json: Any = None) -> Any:
        """One API call; 429/503 (rate limit, busy model, not ready) wait as told by
        Retry-After and try again, since a nightly job should ride out load."""
        for attempt in range(self._busy_retries + 1):
            response = self._http.request(method, path, json=json)
            if response.status_code in ok:
                return response.json() if response.content else None
            if response.status_code in _BUSY and attempt < self._busy_retries:
                time.sleep(min(30.0, float(response.headers.get("Retry-After", "1") or 1)))
                continue
            try:
                error = response.json().get("error", {})
            except ValueError:
                error = {}
            raise ServiceError(
                response.status_code,
                str(error.get("code", "http_error")),
                str(error.get("message", response.text[:300])),
            )
        raise AssertionError("unreachable")

    def fresh_user(self, user_id: str) -> None:
        """Create the user with an empty profile, removing a leftover of a killed run."""
        self.delete_user(user_id)
        self._call("POST", "/v1/users", ok=(201,), json={"id": user_id})

    def delete_user(self, user_id: str) -> None:
        self._call("DELETE", f"/v1/users/{user_id}", ok=(204, 404))

    def add_instruction(self, user_id: str, text: str, **extra: Any) -> str:
        created = self._call(
            "POST", f"/v1/users/{user_id}/instructions", ok=(201,), json={"text": text, **extra}
        )
        return str(created["id"])

    def context(self, user_id: str, text: str, **options: Any) -> dict[str, Any]:
        body = {"messages": [{"role": "user", "content": text}], **options}
        found: dict[str, Any] = self._call(
            "POST", f"/v1/users/{user_id}/context", ok=(200,), json=body
        )
        return found

    def record_edit(
        self,
        user_id: str,
        *,
        context: str,
        draft: str,
        edited: str,
        applied_preference: str | None = None,
    ) -> str:
        body = {"context": context, "draft": draft, "edited": edited}
        if applied_preference:
            body["applied_preference"] = applied_preference
        created = self._call("POST", f"/v1/users/{user_id}/edits", ok=(202,), json=body)
        return str(created["id"])

    def wait_edit(self, user_id: str, edit_id: str, *, timeout_s: float = 600.0) -> str:
        """Until the service's worker has handled the edit; its final status."""
        deadline = time.monotonic() + timeout_s
        while True:
            edit = self._call("GET", f"/v1/users/{user_id}/edits/{edit_id}", ok=(200,))
            status = str(edit["inference_status"])
            if status in {"done", "skipped", "failed"}:
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"edit {edit_id} still {status} after {timeout_s:.0f}s")
            time.sleep(0.05)

    def chat(
        self, user_id: str, messages: Sequence[ChatMessage], settings: GenerationSettings
    ) -> ChatReply:
        body: dict[str, Any] = {
            "user": user_id,
            "messages": [m.as_openai() for m in messages],
            "max_tokens": settings.max_tokens,
            "temperature": settings.temperature,
        }
        if settings.seed is not None:
            body["seed"] = settings.seed
        done = self._call("POST", "/v1/chat/completions", ok=(200,), json=body)
        usage = done.get("usage") or {}
        return ChatReply(
            text=done["choices"][0]["message"].get("content") or "",
            model=str(done.get("model", "")),
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            profile_items=list((done.get("tailor") or {}).get("profile_items", [])),
        )


class ServiceModel:
    """The model behind Tailor as a ModelBackend, for one user (a user with an empty
    profile gets the bare model): judges and baselines then use the very same model
    as the Tailor arm, wherever the service sends it."""

    def __init__(self, client: TailorClient, user_id: str) -> None:
        self._client = client
        self._user_id = user_id
        self.served_model = ""  # the name the service reports, once it has answered

    @property
    def model_id(self) -> str:
        """Stable (cache keys use it); the service's model is in `served_model`."""
        return "tailor-service"

    def complete(self, messages: Sequence[ChatMessage], settings: GenerationSettings) -> Completion:
        reply = self._client.chat(self._user_id, messages, settings)
        self.served_model = reply.model or self.served_model
        return Completion(
            text=reply.text,
            finish_reason="stop",
            model=reply.model,
            prompt_tokens=reply.prompt_tokens,
            completion_tokens=reply.completion_tokens,
        )

    def stream(
        self, messages: Sequence[ChatMessage], settings: GenerationSettings
    ) -> Iterator[Delta]:
        done = self.complete(messages, settings)
        yield Delta(text=done.text, finish_reason=done.finish_reason)
