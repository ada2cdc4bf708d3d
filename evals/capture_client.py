"""The capture calls of Tailor's API, over the same HTTP layer as evals/client.py
(`TailorClient`'s, retries on 429/503 included): submit a conversation, wait for its
capture job, list and accept the suggestions it made.

Contract:
    POST /v1/users/{id}/conversations            {"messages": [...]} -> 202 {"id", ...}
    GET  /v1/users/{id}/conversations/{cid}      {"status": pending|running|done|failed,
                                                  "suggestions": [...]}
    GET  /v1/users/{id}/suggestions?status=pending  {"data": [{id, text, quote, ...}]}
    POST /v1/users/{id}/suggestions/{sid}/accept"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from personalization.messages import ChatMessage

DONE = {"done", "failed"}


class Caller(Protocol):
    """`TailorClient._call`: one API call, raising ServiceError on an error status."""

    def __call__(self, method: str, path: str, *, ok: Sequence[int], json: Any = None) -> Any: ...


@dataclass(frozen=True, slots=True)
class Suggestion:
    id: str
    text: str
    quote: str
    confidence: float
    status: str

    @classmethod
    def of(cls, row: dict[str, Any]) -> Suggestion:
        return cls(
            id=str(row["id"]),
            text=str(row.get("text") or ""),
            quote=str(row.get("quote") or ""),
            confidence=float(row.get("confidence") or 0.0),
            status=str(row.get("status") or ""),
        )


class CaptureClient:
    def __init__(self, call: Caller, *, poll_s: float = 0.05) -> None:
        self._call = call
        self._poll_s = poll_s

    def submit(self, user_id: str, messages: Sequence[ChatMessage]) -> str:
        body = {"messages": [m.as_openai() for m in messages]}
        created = self._call("POST", f"/v1/users/{user_id}/conversations", ok=(202,), json=body)
        return str(created["id"])

    def wait(self, user_id: str, conversation_id: str, *, timeout_s: float = 600.0) -> str:
        """Until the capture job has finished; its final status ("done" or "failed")."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = self._call(
                "GET", f"/v1/users/{user_id}/conversations/{conversation_id}", ok=(200,)
            )
            status = str(found["status"])
            if status in DONE:
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"conversation {conversation_id} still {status} after {timeout_s:.0f}s"
                )
            time.sleep(self._poll_s)

    def pending(self, user_id: str) -> list[Suggestion]:
        found = self._call("GET", f"/v1/users/{user_id}/suggestions?status=pending", ok=(200,))
        return [Suggestion.of(row) for row in found.get("data", [])]

    def accept(self, user_id: str, suggestion_id: str) -> None:
        self._call(
            "POST",
            f"/v1/users/{user_id}/suggestions/{suggestion_id}/accept",
            ok=(200, 201, 204),
        )

    def capture(
        self, user_id: str, messages: Sequence[ChatMessage], *, timeout_s: float = 600.0
    ) -> tuple[str, list[Suggestion]]:
        """Submit, wait, and the user's pending suggestions afterwards (a fresh user's
        are all from this conversation)."""
        status = self.wait(user_id, self.submit(user_id, messages), timeout_s=timeout_s)
        return status, self.pending(user_id) if status == "done" else []
