"""The asynchronous client: TailorClient's methods, awaited. Both build the same `Call`s
(tailor_client/_calls.py); only sending them differs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, TypeVar

import httpx

from tailor_client import _calls as c
from tailor_client import types as t
from tailor_client._calls import Call, Messages, RetryPolicy
from tailor_client._http import AsyncHttp
from tailor_client.client import DEFAULT_URL, FINISHED_CAPTURE, FINISHED_EDIT

T = TypeVar("T")


class AsyncTailorClient:
    """One client for the whole API, for asyncio apps.

    `base_url` and `api_key` (a tenant-wide or user-bound key) for a running service;
    or `http`, an httpx.AsyncClient you configured (a mounted transport, Starlette's
    TestClient over ASGI), whose own base URL and headers are used as they are."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        api_key: str | None = None,
        *,
        timeout_s: float = 60.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        http: AsyncHttp | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._owned: httpx.AsyncClient | None = None
        if http is None:
            http = self._owned = httpx.AsyncClient(
                base_url=base_url.rstrip("/"),
                timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)),
                transport=transport,
            )
        self._http: AsyncHttp = http
        self._auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.retry = retry or RetryPolicy()
        self._sleep = sleep

    async def aclose(self) -> None:
        """Closes the connection pool this client made (an injected `http` is yours)."""
        if self._owned is not None:
            await self._owned.aclose()

    async def __aenter__(self) -> AsyncTailorClient:
        return self

    async def __aexit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def run(self, call: Call[T]) -> T:
        """Send one call, waiting out 429/503 as the retry policy allows."""
        attempt = 0
        while True:
            response = await self._http.request(
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
            await self._sleep(wait)
            attempt += 1

    # --- health, tenants, keys ----------------------------------------------------------

    async def health(self) -> t.Health:
        return await self.run(c.health())

    async def ready(self) -> t.Health:
        """`status` is "ready", or "not_ready" while the replica loads its index."""
        return await self.run(c.ready())

    async def create_tenant(self, name: str, *, admin_token: str) -> t.CreatedTenant:
        return await self.run(c.create_tenant(name, admin_token))

    async def create_key(
        self, name: str = "", *, user_id: str | None = None, expires_at: datetime | None = None
    ) -> t.CreatedKey:
        return await self.run(c.create_key(name, user_id, expires_at))

    async def list_keys(self) -> list[t.Key]:
        return await self.run(c.list_keys())

    async def revoke_key(self, key_id: str) -> None:
        await self.run(c.revoke_key(key_id))

    # --- users --------------------------------------------------------------------------

    async def create_user(self, user_id: str) -> t.User:
        return await self.run(c.create_user(user_id))

    async def list_users(self, *, limit: int = 100, offset: int = 0) -> t.UserPage:
        return await self.run(c.list_users(limit, offset))

    async def get_user(self, user_id: str) -> t.User:
        return await self.run(c.get_user(user_id))

    async def delete_user(self, user_id: str) -> None:
        await self.run(c.delete_user(user_id))

    # --- standing instructions ----------------------------------------------------------

    async def create_instruction(
        self,
        user_id: str,
        text: str,
        *,
        applies_when: str | None = None,
        always_on: bool = False,
        source: Literal["user", "app"] = "app",
        idempotency_key: str | None = None,
    ) -> t.Instruction:
        return await self.run(
            c.create_instruction(user_id, text, applies_when, always_on, source, idempotency_key)
        )

    async def list_instructions(
        self,
        user_id: str,
        *,
        status: t.InstructionStatus | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> t.InstructionPage:
        return await self.run(c.list_instructions(user_id, status, limit, offset))

    async def get_instruction(self, user_id: str, instruction_id: str) -> t.Instruction:
        return await self.run(c.get_instruction(user_id, instruction_id))

    async def update_instruction(
        self,
        user_id: str,
        instruction_id: str,
        *,
        if_version: int | None = None,
        **changes: Any,
    ) -> t.Instruction:
        """PATCH with the fields given (text, applies_when, always_on, status, kind,
        domains, typical_requests); `if_version` makes it conditional (412 if stale)."""
        return await self.run(c.update_instruction(user_id, instruction_id, changes, if_version))

    async def delete_instruction(
        self, user_id: str, instruction_id: str, *, if_version: int | None = None
    ) -> None:
        await self.run(c.delete_instruction(user_id, instruction_id, if_version))

    async def instruction_history(self, user_id: str, instruction_id: str) -> t.InstructionHistory:
        return await self.run(c.instruction_history(user_id, instruction_id))

    async def restore_instruction(
        self, user_id: str, instruction_id: str, version: int, *, if_version: int | None = None
    ) -> t.Instruction:
        return await self.run(c.restore_instruction(user_id, instruction_id, version, if_version))

    # --- edits and inferred preferences --------------------------------------------------

    async def record_edit(
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
        return await self.run(
            c.record_edit(
                user_id, context, draft, edited, task, applied_preference, idempotency_key
            )
        )

    async def list_edits(self, user_id: str, *, limit: int = 100, offset: int = 0) -> t.EditPage:
        return await self.run(c.list_edits(user_id, limit, offset))

    async def get_edit(self, user_id: str, edit_id: str) -> t.Edit:
        return await self.run(c.get_edit(user_id, edit_id))

    async def wait_edit(
        self, user_id: str, edit_id: str, *, timeout_s: float = 600.0, poll_s: float = 0.05
    ) -> t.Edit:
        """The edit once the service's worker has finished with it (done, skipped or
        failed); TimeoutError if it has not within `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while True:
            edit = await self.get_edit(user_id, edit_id)
            if edit["inference_status"] in FINISHED_EDIT:
                return edit
            if time.monotonic() > deadline:
                status = edit["inference_status"]
                raise TimeoutError(f"edit {edit_id} still {status} after {timeout_s:.0f}s")
            await self._sleep(poll_s)

    async def list_preferences(
        self,
        user_id: str,
        *,
        status: t.PreferenceStatus | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> t.PreferencePage:
        return await self.run(c.list_preferences(user_id, status, limit, offset))

    async def get_preference(self, user_id: str, preference_id: str) -> t.Preference:
        return await self.run(c.get_preference(user_id, preference_id))

    async def update_preference(
        self,
        user_id: str,
        preference_id: str,
        *,
        text: str | None = None,
        status: Literal["suggested", "accepted", "rejected"] | None = None,
        if_version: int | None = None,
    ) -> t.Preference:
        return await self.run(c.update_preference(user_id, preference_id, text, status, if_version))

    async def promote_preference(
        self,
        user_id: str,
        preference_id: str,
        *,
        applies_when: str | None = None,
        always_on: bool = False,
        if_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> t.Promoted:
        return await self.run(
            c.promote_preference(
                user_id, preference_id, applies_when, always_on, if_version, idempotency_key
            )
        )

    async def preference_history(self, user_id: str, preference_id: str) -> t.PreferenceHistory:
        return await self.run(c.preference_history(user_id, preference_id))

    # --- preference examples ------------------------------------------------------------

    async def create_example(
        self,
        user_id: str,
        *,
        prompt: str,
        chosen: str,
        rejected: str,
        idempotency_key: str | None = None,
    ) -> t.Example:
        return await self.run(c.create_example(user_id, prompt, chosen, rejected, idempotency_key))

    async def list_examples(
        self, user_id: str, *, limit: int = 100, offset: int = 0
    ) -> t.ExamplePage:
        return await self.run(c.list_examples(user_id, limit, offset))

    async def get_example(self, user_id: str, example_id: str) -> t.Example:
        return await self.run(c.get_example(user_id, example_id))

    async def delete_example(self, user_id: str, example_id: str) -> None:
        await self.run(c.delete_example(user_id, example_id))

    # --- turns --------------------------------------------------------------------------

    async def context(self, user_id: str, messages: Messages, **options: Any) -> t.Context:
        """The profile for this turn. Options: top_k, threshold, whole_profile,
        token_budget, examples_k, cipher_k (None or absent: the server's setting)."""
        return await self.run(c.context(user_id, messages, options))

    async def chat(
        self,
        messages: Messages,
        *,
        user: str | None = None,
        extra: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> t.ChatCompletion:
        """OpenAI-compatible chat as `user` (optional with a user-bound key). Options:
        model, max_tokens, temperature, top_p, stop, seed...; `extra` is sent as given."""
        return await self.run(
            c.chat(c.chat_body(messages, False, {"user": user, **options}, extra))
        )

    async def chat_stream(
        self,
        messages: Messages,
        *,
        user: str | None = None,
        extra: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> AsyncIterator[t.ChatCompletionChunk]:
        """The chat's chunks as they arrive; the first carries `tailor` (profile items
        used). A failure before the stream starts raises its typed error, as `chat`;
        one midway raises the error event's."""
        call = c.chat(c.chat_body(messages, True, {"user": user, **options}, extra))
        attempt = 0
        while True:
            async with self._http.stream(
                call.method, call.path, json=call.json, headers={**self._auth, **call.headers}
            ) as response:
                if response.status_code == 200:
                    async for line in response.aiter_lines():
                        event = c.sse_line(line)
                        if isinstance(event, str):
                            return
                        if event is not None:
                            yield event
                    return
                retry_after = response.headers.get("Retry-After")
                wait = self.retry.wait_s(call, response.status_code, retry_after, attempt)
                if wait < 0:
                    c.raise_error(response.status_code, await response.aread(), retry_after)
            await self._sleep(wait)
            attempt += 1

    async def models(self) -> t.ModelList:
        """The model behind chat, in OpenAI's list shape (what chat UIs ask first)."""
        return await self.run(c.models())

    async def model(self, model_id: str) -> t.Model:
        return await self.run(c.model(model_id))

    async def turns(self, user_id: str, *, limit: int = 50) -> t.TurnPage:
        return await self.run(c.turns(user_id, limit))

    # --- conversation capture and suggestions ---------------------------------------------

    async def submit_conversation(
        self,
        user_id: str,
        messages: Messages,
        *,
        conversation_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> t.Capture:
        """Queue a conversation; the worker turns what the user states in it into
        pending suggestions (poll with `wait_conversation`)."""
        return await self.run(
            c.submit_conversation(user_id, messages, conversation_id, idempotency_key)
        )

    async def get_conversation(self, user_id: str, capture_id: str) -> t.Capture:
        return await self.run(c.get_conversation(user_id, capture_id))

    async def wait_conversation(
        self, user_id: str, capture_id: str, *, timeout_s: float = 600.0, poll_s: float = 0.05
    ) -> t.Capture:
        """The capture once the worker has finished with it (done or failed);
        TimeoutError if it has not within `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while True:
            capture = await self.get_conversation(user_id, capture_id)
            if capture["status"] in FINISHED_CAPTURE:
                return capture
            if time.monotonic() > deadline:
                status = capture["status"]
                raise TimeoutError(f"capture {capture_id} still {status} after {timeout_s:.0f}s")
            await self._sleep(poll_s)

    async def list_suggestions(
        self, user_id: str, *, status: t.SuggestionStatus = "pending"
    ) -> t.SuggestionList:
        return await self.run(c.list_suggestions(user_id, status))

    async def accept_suggestion(
        self, user_id: str, suggestion_id: str, *, text: str | None = None
    ) -> t.SuggestionAccepted:
        """Make it a standing instruction (worded as `text` if given); a suggestion
        decided before raises `SuggestionAlreadyDecidedError`."""
        return await self.run(c.accept_suggestion(user_id, suggestion_id, text))

    async def reject_suggestion(self, user_id: str, suggestion_id: str) -> t.Suggestion:
        return await self.run(c.reject_suggestion(user_id, suggestion_id))

    # --- privacy and sessions -------------------------------------------------------------

    async def export_user(self, user_id: str) -> t.ProfileExport:
        return await self.run(c.export_user(user_id))

    async def import_user(
        self, user_id: str, document: Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> t.ImportResult:
        return await self.run(c.import_user(user_id, document, idempotency_key))

    async def create_session(self, user_id: str) -> t.Session:
        return await self.run(c.create_session(user_id))

    async def end_session(self, user_id: str, session_id: str) -> None:
        await self.run(c.end_session(user_id, session_id))
