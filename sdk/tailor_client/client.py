"""The synchronous client. Each method builds its `Call` (tailor_client/_calls.py) and
runs it; AsyncTailorClient has the same methods, awaited."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, TypeVar

import httpx

from tailor_client import _calls as c
from tailor_client import types as t
from tailor_client._calls import Call, Messages, RetryPolicy
from tailor_client._http import SyncHttp

T = TypeVar("T")

DEFAULT_URL = "http://127.0.0.1:8000"
FINISHED_EDIT = frozenset({"done", "skipped", "failed"})
FINISHED_CAPTURE = frozenset({"done", "failed"})


class TailorClient:
    """One client for the whole API.

    `base_url` and `api_key` (a tenant-wide or user-bound key) for a running service;
    or `http`, an httpx.Client you configured (a mounted transport, Starlette's
    TestClient over ASGI), whose own base URL and headers are used as they are."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        api_key: str | None = None,
        *,
        timeout_s: float = 60.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        http: SyncHttp | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._owned: httpx.Client | None = None
        if http is None:
            http = self._owned = httpx.Client(
                base_url=base_url.rstrip("/"),
                timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)),
                transport=transport,
            )
        self._http: SyncHttp = http
        self._auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.retry = retry or RetryPolicy()
        self._sleep = sleep

    def close(self) -> None:
        """Closes the connection pool this client made (an injected `http` is yours)."""
        if self._owned is not None:
            self._owned.close()

    def __enter__(self) -> TailorClient:
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.close()

    def run(self, call: Call[T]) -> T:
        """Send one call, waiting out 429/503 as the retry policy allows."""
        attempt = 0
        while True:
            response = self._http.request(
                call.method,
                call.path,
                json=call.json,
                params=call.params,
                headers={**self._auth, **call.headers},
            )
            retry_after = response.headers.get("Retry-After")
            wait = self.retry.wait_s(call, response.status_code, retry_after, attempt)
            if wait < 0:
                return c.finish(call, response.status_code, response.content, retry_after)
            self._sleep(wait)
            attempt += 1

    # --- health, tenants, keys ----------------------------------------------------------

    def health(self) -> t.Health:
        return self.run(c.health())

    def ready(self) -> t.Health:
        """`status` is "ready", or "not_ready" while the replica loads its index."""
        return self.run(c.ready())

    def create_tenant(self, name: str, *, admin_token: str) -> t.CreatedTenant:
        return self.run(c.create_tenant(name, admin_token))

    def create_key(
        self, name: str = "", *, user_id: str | None = None, expires_at: datetime | None = None
    ) -> t.CreatedKey:
        return self.run(c.create_key(name, user_id, expires_at))

    def list_keys(self) -> list[t.Key]:
        return self.run(c.list_keys())

    def revoke_key(self, key_id: str) -> None:
        self.run(c.revoke_key(key_id))

    # --- users --------------------------------------------------------------------------

    def create_user(self, user_id: str) -> t.User:
        return self.run(c.create_user(user_id))

    def list_users(self, *, limit: int = 100, offset: int = 0) -> t.UserPage:
        return self.run(c.list_users(limit, offset))

    def get_user(self, user_id: str) -> t.User:
        return self.run(c.get_user(user_id))

    def delete_user(self, user_id: str) -> None:
        self.run(c.delete_user(user_id))

    # --- standing instructions ----------------------------------------------------------

    def create_instruction(
        self,
        user_id: str,
        text: str,
        *,
        applies_when: str | None = None,
        always_on: bool = False,
        source: Literal["user", "app"] = "app",
        idempotency_key: str | None = None,
    ) -> t.Instruction:
        return self.run(
            c.create_instruction(user_id, text, applies_when, always_on, source, idempotency_key)
        )

    def list_instructions(
        self,
        user_id: str,
        *,
        status: t.InstructionStatus | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> t.InstructionPage:
        return self.run(c.list_instructions(user_id, status, limit, offset))

    def get_instruction(self, user_id: str, instruction_id: str) -> t.Instruction:
        return self.run(c.get_instruction(user_id, instruction_id))

    def update_instruction(
        self,
        user_id: str,
        instruction_id: str,
        *,
        if_version: int | None = None,
        **changes: Any,
    ) -> t.Instruction:
        """PATCH with the fields given (text, applies_when, always_on, status, kind,
        domains, typical_requests); `if_version` makes it conditional (412 if stale)."""
        return self.run(c.update_instruction(user_id, instruction_id, changes, if_version))

    def delete_instruction(
        self, user_id: str, instruction_id: str, *, if_version: int | None = None
    ) -> None:
        self.run(c.delete_instruction(user_id, instruction_id, if_version))

    def instruction_history(self, user_id: str, instruction_id: str) -> t.InstructionHistory:
        return self.run(c.instruction_history(user_id, instruction_id))

    def restore_instruction(
        self, user_id: str, instruction_id: str, version: int, *, if_version: int | None = None
    ) -> t.Instruction:
        return self.run(c.restore_instruction(user_id, instruction_id, version, if_version))

    # --- edits and inferred preferences --------------------------------------------------

    def record_edit(
        self,
        user_id: str,
        *,
        context: str,
        draft: str,
        edited: str,
        task: str | None = None,
        applied_preference: str | None = None,
        idempotency_key: str | None = None,
    ) -> t.Edit:
        return self.run(
            c.record_edit(
                user_id, context, draft, edited, task, applied_preference, idempotency_key
            )
        )

    def list_edits(self, user_id: str, *, limit: int = 100, offset: int = 0) -> t.EditPage:
        return self.run(c.list_edits(user_id, limit, offset))

    def get_edit(self, user_id: str, edit_id: str) -> t.Edit:
        return self.run(c.get_edit(user_id, edit_id))

    def wait_edit(
        self, user_id: str, edit_id: str, *, timeout_s: float = 600.0, poll_s: float = 0.05
    ) -> t.Edit:
        """The edit once the service's worker has finished with it (done, skipped or
        failed); TimeoutError if it has not within `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while True:
            edit = self.get_edit(user_id, edit_id)
            if edit["inference_status"] in FINISHED_EDIT:
                return edit
            if time.monotonic() > deadline:
                status = edit["inference_status"]
                raise TimeoutError(f"edit {edit_id} still {status} after {timeout_s:.0f}s")
            self._sleep(poll_s)

    def list_preferences(
        self,
        user_id: str,
        *,
        status: t.PreferenceStatus | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> t.PreferencePage:
        return self.run(c.list_preferences(user_id, status, limit, offset))

    def get_preference(self, user_id: str, preference_id: str) -> t.Preference:
        return self.run(c.get_preference(user_id, preference_id))

    def update_preference(
        self,
        user_id: str,
        preference_id: str,
        *,
        text: str | None = None,
        status: Literal["suggested", "accepted", "rejected"] | None = None,
        if_version: int | None = None,
    ) -> t.Preference:
        return self.run(c.update_preference(user_id, preference_id, text, status, if_version))

    def promote_preference(
        self,
        user_id: str,
        preference_id: str,
        *,
        applies_when: str | None = None,
        always_on: bool = False,
        if_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> t.Promoted:
        return self.run(
            c.promote_preference(
                user_id, preference_id, applies_when, always_on, if_version, idempotency_key
            )
        )

    def preference_history(self, user_id: str, preference_id: str) -> t.PreferenceHistory:
        return self.run(c.preference_history(user_id, preference_id))

    # --- preference examples ------------------------------------------------------------

    def create_example(
        self,
        user_id: str,
        *,
        prompt: str,
        chosen: str,
        rejected: str,
        idempotency_key: str | None = None,
    ) -> t.Example:
        return self.run(c.create_example(user_id, prompt, chosen, rejected, idempotency_key))

    def list_examples(self, user_id: str, *, limit: int = 100, offset: int = 0) -> t.ExamplePage:
        return self.run(c.list_examples(user_id, limit, offset))

    def get_example(self, user_id: str, example_id: str) -> t.Example:
        return self.run(c.get_example(user_id, example_id))

    def delete_example(self, user_id: str, example_id: str) -> None:
        self.run(c.delete_example(user_id, example_id))

    # --- turns --------------------------------------------------------------------------

    def context(self, user_id: str, messages: Messages, **options: Any) -> t.Context:
        """The profile for this turn. Options: top_k, threshold, whole_profile,
        token_budget, examples_k, cipher_k (None or absent: the server's setting)."""
        return self.run(c.context(user_id, messages, options))

    def chat(
        self,
        messages: Messages,
        *,
        user: str | None = None,
        extra: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> t.ChatCompletion:
        """OpenAI-compatible chat as `user` (optional with a user-bound key). Options:
        model, max_tokens, temperature, top_p, stop, seed...; `extra` is sent as given."""
        return self.run(c.chat(c.chat_body(messages, False, {"user": user, **options}, extra)))

    def chat_stream(
        self,
        messages: Messages,
        *,
        user: str | None = None,
        extra: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Iterator[t.ChatCompletionChunk]:
        """The chat's chunks as they arrive; the first carries `tailor` (profile items
        used). A failure before the stream starts raises its typed error, as `chat`;
        one midway raises the error event's."""
        call = c.chat(c.chat_body(messages, True, {"user": user, **options}, extra))
        attempt = 0
        while True:
            with self._http.stream(
                call.method, call.path, json=call.json, headers={**self._auth, **call.headers}
            ) as response:
                if response.status_code == 200:
                    for line in response.iter_lines():
                        event = c.sse_line(line)
                        if isinstance(event, str):
                            return
                        if event is not None:
                            yield event
                    return
                retry_after = response.headers.get("Retry-After")
                wait = self.retry.wait_s(call, response.status_code, retry_after, attempt)
                if wait < 0:
                    c.raise_error(response.status_code, response.read(), retry_after)
            self._sleep(wait)
            attempt += 1

    def models(self) -> t.ModelList:
        """The model behind chat, in OpenAI's list shape (what chat UIs ask first)."""
        return self.run(c.models())

    def model(self, model_id: str) -> t.Model:
        return self.run(c.model(model_id))

    def turns(self, user_id: str, *, limit: int = 50) -> t.TurnPage:
        return self.run(c.turns(user_id, limit))

    # --- conversation capture and suggestions ---------------------------------------------

    def submit_conversation(
        self,
        user_id: str,
        messages: Messages,
        *,
        conversation_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> t.Capture:
        """Queue a conversation; the worker turns what the user states in it into
        pending suggestions (poll with `wait_conversation`)."""
        return self.run(c.submit_conversation(user_id, messages, conversation_id, idempotency_key))

    def get_conversation(self, user_id: str, capture_id: str) -> t.Capture:
        return self.run(c.get_conversation(user_id, capture_id))

    def wait_conversation(
        self, user_id: str, capture_id: str, *, timeout_s: float = 600.0, poll_s: float = 0.05
    ) -> t.Capture:
        """The capture once the worker has finished with it (done or failed);
        TimeoutError if it has not within `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while True:
            capture = self.get_conversation(user_id, capture_id)
            if capture["status"] in FINISHED_CAPTURE:
                return capture
            if time.monotonic() > deadline:
                status = capture["status"]
                raise TimeoutError(f"capture {capture_id} still {status} after {timeout_s:.0f}s")
            self._sleep(poll_s)

    def list_suggestions(
        self, user_id: str, *, status: t.SuggestionStatus = "pending"
    ) -> t.SuggestionList:
        return self.run(c.list_suggestions(user_id, status))

    def accept_suggestion(
        self, user_id: str, suggestion_id: str, *, text: str | None = None
    ) -> t.SuggestionAccepted:
        """Make it a standing instruction (worded as `text` if given); a suggestion
        decided before raises `SuggestionAlreadyDecidedError`."""
        return self.run(c.accept_suggestion(user_id, suggestion_id, text))

    def reject_suggestion(self, user_id: str, suggestion_id: str) -> t.Suggestion:
        return self.run(c.reject_suggestion(user_id, suggestion_id))

    # --- privacy and sessions -------------------------------------------------------------

    def export_user(self, user_id: str) -> t.ProfileExport:
        return self.run(c.export_user(user_id))

    def import_user(
        self, user_id: str, document: Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> t.ImportResult:
        return self.run(c.import_user(user_id, document, idempotency_key))

    def create_session(self, user_id: str) -> t.Session:
        return self.run(c.create_session(user_id))

    def end_session(self, user_id: str, session_id: str) -> None:
        self.run(c.end_session(user_id, session_id))
