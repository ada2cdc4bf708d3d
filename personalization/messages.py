"""The chat message shape shared by context building and model backends."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """`content` is the message's text, what selection and token counting read. `sent` is
    the message exactly as the app sent it (null content, content parts, `tool_calls`,
    `tool_call_id`, `name`), so an OpenAI-compatible server receives it unchanged; None
    for a message Tailor writes itself (the profile block, the evals' prompts)."""

    role: str  # system | developer | user | assistant | tool
    content: str
    sent: Mapping[str, Any] | None = field(default=None, compare=False)

    def as_openai(self) -> dict[str, Any]:
        if self.sent is not None:
            return dict(self.sent)
        return {"role": self.role, "content": self.content}

    def as_text(self) -> dict[str, str]:
        """Role and text only, for a chat template that renders nothing else."""
        return {"role": self.role, "content": self.content}
