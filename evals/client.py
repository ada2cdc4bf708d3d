"""The evaluators' view of Tailor: the public HTTP API through the SDK (tailor_client),
the same client apps use. It drives a remote service (`--service URL`) and an
in-process app (evals/inprocess.py hands it a TestClient, an httpx.Client over ASGI).
This layer only adds what the evaluators share: a fresh user per run and chat on the
evaluators' own message and settings types."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
import tailor_client

from personalization.backends import Completion, Delta, GenerationSettings
from personalization.messages import ChatMessage

ServiceError = tailor_client.TailorError
"""What a refused call raises (`status`, `code`, `message`); the SDK's typed errors
are its subclasses."""

# A nightly job should ride out load: many waits, each as long as the server asks.
_EVAL_RETRIES = tailor_client.RetryPolicy(max_retries=8, max_wait_s=30.0)


@dataclass(frozen=True, slots=True)
class ChatReply:
    text: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    profile_items: list[dict[str, Any]] = field(default_factory=list)


class Http(tailor_client.SyncHttp, Protocol):
    """httpx.Client, or Starlette's TestClient over the app in this process."""

    def close(self) -> None: ...


class TailorClient:
    def __init__(self, http: Http) -> None:
        self.api = tailor_client.TailorClient(http=http, retry=_EVAL_RETRIES)
        self._http = http

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

    def fresh_user(self, user_id: str) -> None:
        """Create the user with an empty profile, removing a leftover of a killed run."""
        self.delete_user(user_id)
        self.api.create_user(user_id)

    def delete_user(self, user_id: str) -> None:
        with contextlib.suppress(tailor_client.NotFoundError):
            self.api.delete_user(user_id)

    def add_instruction(self, user_id: str, text: str, **extra: Any) -> str:
        return self.api.create_instruction(user_id, text, **extra)["id"]

    def context(self, user_id: str, text: str, **options: Any) -> dict[str, Any]:
        return dict(self.api.context(user_id, text, **options))

    def record_edit(
        self,
        user_id: str,
        *,
        context: str,
        draft: str,
        edited: str,
        applied_preference: str | None = None,
    ) -> str:
        edit = self.api.record_edit(
            user_id,
            context=context,
            draft=draft,
            edited=edited,
            applied_preference=applied_preference or None,
        )
        return edit["id"]

    def wait_edit(self, user_id: str, edit_id: str, *, timeout_s: float = 600.0) -> str:
        """Until the service's worker has handled the edit; its final status."""
        return self.api.wait_edit(user_id, edit_id, timeout_s=timeout_s)["inference_status"]

    def chat(
        self, user_id: str, messages: Sequence[ChatMessage], settings: GenerationSettings
    ) -> ChatReply:
        done = self.api.chat(
            [m.as_openai() for m in messages],
            user=user_id,
            max_tokens=settings.max_tokens,
            temperature=settings.temperature,
            seed=settings.seed,
        )
        usage = done.get("usage") or {}
        return ChatReply(
            text=done["choices"][0]["message"].get("content") or "",
            model=str(done.get("model", "")),
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            profile_items=[
                dict(item) for item in (done.get("tailor") or {}).get("profile_items", [])
            ],
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
