"""The capture calls the evaluator makes, over the SDK (`tailor_client.TailorClient`,
retries on 429/503 and typed errors included): submit a conversation, wait for its
capture job, read and accept the suggestions it made."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from personalization.messages import ChatMessage

DONE = {"done", "failed"}


class CaptureApi(Protocol):
    """The part of `tailor_client.TailorClient` capture needs (a fake in unit tests)."""

    def submit_conversation(self, user_id: str, messages: Any) -> Any: ...
    def get_conversation(self, user_id: str, capture_id: str) -> Any: ...
    def list_suggestions(self, user_id: str, *, status: Any = "pending") -> Any: ...
    def accept_suggestion(self, user_id: str, suggestion_id: str) -> Any: ...


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
    def __init__(self, api: CaptureApi, *, poll_s: float = 0.05) -> None:
        self._api = api
        self._poll_s = poll_s

    def submit(self, user_id: str, messages: Sequence[ChatMessage]) -> str:
        created = self._api.submit_conversation(user_id, [m.as_openai() for m in messages])
        return str(created["id"])

    def wait(self, user_id: str, capture_id: str, *, timeout_s: float = 600.0) -> dict[str, Any]:
        """Until the capture job has finished ("done" or "failed"); the job's answer."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = dict(self._api.get_conversation(user_id, capture_id))
            status = str(found["status"])
            if status in DONE:
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"conversation {capture_id} still {status} after {timeout_s:.0f}s"
                )
            time.sleep(self._poll_s)

    def pending(self, user_id: str) -> list[Suggestion]:
        found = self._api.list_suggestions(user_id, status="pending")
        return [Suggestion.of(row) for row in found.get("data", [])]

    def accept(self, user_id: str, suggestion_id: str) -> None:
        self._api.accept_suggestion(user_id, suggestion_id)

    def capture(
        self, user_id: str, messages: Sequence[ChatMessage], *, timeout_s: float = 600.0
    ) -> tuple[str, list[Suggestion]]:
        """Submit, wait, and the pending suggestions this conversation made or reinforced
        (by the job's own list, so other conversations' suggestions never count), in the
        order of their text: suggestions made by one job share a creation time, and a
        fixed order keeps the profiles built from them, and so cached answers, stable."""
        job = self.wait(user_id, self.submit(user_id, messages), timeout_s=timeout_s)
        status = str(job["status"])
        if status != "done":
            return status, []
        mine = {str(s) for s in job.get("suggestions", [])}
        return status, sorted(
            (s for s in self.pending(user_id) if s.id in mine), key=lambda s: s.text
        )
