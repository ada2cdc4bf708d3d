"""Request and response bodies of conversation capture and its suggestions (kept apart
from service/schemas.py, which is split by resource as it grows)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from service.schemas import (
    MAX_MESSAGES,
    ChatMessageIn,
    InstructionPublic,
    InstructionText,
    Request,
)

MAX_CONVERSATION_ID_CHARS = 200


class ConversationCreate(Request):
    messages: list[ChatMessageIn] = Field(
        min_length=1,
        max_length=MAX_MESSAGES,
        description="the conversation in OpenAI format; only `user` messages are read",
    )
    conversation_id: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_CONVERSATION_ID_CHARS,
        pattern=r"\S",
        description="the app's own id for the conversation, kept as provenance",
    )

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "messages": [
                        {"role": "user", "content": "I'm allergic to peanuts, by the way."},
                        {"role": "assistant", "content": "Noted!"},
                    ],
                    "conversation_id": "chat-2026-12-03",
                }
            ]
        },
    )


class CapturePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    status: Literal["pending", "running", "done", "failed"]
    conversation_id: str | None
    suggestions: list[uuid.UUID] = Field(
        validation_alias="suggestion_ids",
        description="suggestions this conversation created or reinforced (once done)",
    )
    error: str | None = Field(validation_alias="last_error")
    created_at: datetime


class SuggestionPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    text: str = Field(description="the preference as a standing instruction")
    quote: str = Field(description="the user's own words it was captured from")
    conversation_id: str | None
    capture_id: uuid.UUID | None
    confidence: float
    action: Literal["new", "supersede"] = Field(
        description="new: accepting adds an instruction; supersede: it writes a new version "
        "of `target_instruction_id` (the one it contradicts)"
    )
    target_instruction_id: uuid.UUID | None
    status: Literal["pending", "accepted", "rejected"]
    seen_count: int = Field(description="times the user stated it (1 when first captured)")
    last_seen_at: datetime
    created_at: datetime


class SuggestionList(BaseModel):
    data: list[SuggestionPublic]


class SuggestionAccept(Request):
    text: InstructionText | None = Field(
        None, description="reworded text to accept instead of the suggested one"
    )


class SuggestionAccepted(BaseModel):
    suggestion: SuggestionPublic
    instruction: InstructionPublic
