"""The chat message shape shared by context building and model backends."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: str  # system | developer | user | assistant | tool
    content: str

    def as_openai(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}
