"""Preferences a capable model finds in a conversation, implicit ones included (a
choice: "I'll take the roast chicken, shellfish and I do not get along"; a persona's
habits), worded as the user's own standing instructions.

The model sees the whole conversation, since a choice only makes sense next to the
options it was offered, but only the user's words are evidence: every statement must
quote a user message verbatim, and one whose quote is not found in the user's
messages is dropped (so an assistant's "I love jazz" can never become the user's).
The answer is parsed strictly (one JSON object of the documented shape; anything else
yields nothing) and every text passes statement_guard.is_user_preference, which is
what keeps a small model's chatter ("You're a helpful AI assistant named...") out.

Used when the configured backend is an OpenAI-compatible server; the embedded model is
too small for it and capture then uses statement_detector alone."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from personalization.backends import GenerationSettings, ModelBackend
from personalization.embedder import Embedder
from personalization.messages import ChatMessage
from personalization.statement_detector import QUOTE_CHARS, DetectedStatement, detect_statements
from personalization.statement_guard import is_user_preference

PROMPT_VERSION = 1
MAX_STATEMENTS = 10
DEFAULT_CONFIDENCE = 0.7
SETTINGS = GenerationSettings(max_tokens=600, temperature=0.0, seed=0)

SYSTEM = """You read a conversation between a user and an assistant and list the user's \
lasting preferences, constraints and personal facts an assistant should remember for \
future conversations: diets, allergies, health, likes and dislikes, habits, how they want \
answers written. Include preferences the user reveals through choices or by describing \
their life, not only ones stated outright.

Rules:
- Only the user's messages are evidence. Never list what the assistant says or likes.
- Skip questions, hypotheticals, and other people's preferences ("my friend is vegan").
- Skip one-off requests about the current task.
- Write each preference as the user would, in the first person, as one short sentence \
("I am allergic to shellfish.", "I prefer answers as bullet points.").
- quote: the exact words from one user message that show it, copied verbatim.
- confidence: 0 to 1, how sure you are it is a lasting preference.

Answer with JSON only, exactly this shape:
{"preferences": [{"text": "...", "quote": "...", "confidence": 0.9}]}
If there is none, answer {"preferences": []}."""

_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.IGNORECASE)


def render_conversation(messages: Sequence[ChatMessage]) -> str:
    """User turns numbered (the evidence); assistant turns shown as context only."""
    lines: list[str] = []
    number = 0
    for m in messages:
        if m.role == "user":
            number += 1
            lines.append(f"[user message {number}]\n{m.content}")
        elif m.role == "assistant":
            lines.append(f"[assistant, context only]\n{m.content}")
    return "\n\n".join(lines)


def _normal(text: str) -> str:
    return " ".join(re.sub("[\u201c\u201d]", '"', text.replace("\u2019", "'")).lower().split())


def parse_statements(answer: str, user_messages: Sequence[str]) -> list[DetectedStatement]:
    """The statements in the model's `answer`, or [] when it is not the documented JSON.
    Each kept one passed the guard and quotes a user message (whose index it carries)."""
    body = _FENCE.sub("", answer.strip())
    try:
        found = json.loads(body)
    except json.JSONDecodeError:
        return []
    rows = found.get("preferences") if isinstance(found, dict) else None
    if not isinstance(rows, list):
        return []
    haystacks = [_normal(m) for m in user_messages]
    out: list[DetectedStatement] = []
    seen: set[str] = set()
    for row in rows[:MAX_STATEMENTS]:
        statement = _statement(row, haystacks)
        if statement is not None and statement.text.lower() not in seen:
            seen.add(statement.text.lower())
            out.append(statement)
    return out


def _statement(row: Any, haystacks: Sequence[str]) -> DetectedStatement | None:
    if not isinstance(row, dict):
        return None
    text, quote = row.get("text"), row.get("quote")
    if not isinstance(text, str) or not isinstance(quote, str):
        return None
    text, quote = " ".join(text.split()), " ".join(quote.split())
    if not quote or not is_user_preference(text):
        return None
    needle = _normal(quote)
    index = next((i for i, h in enumerate(haystacks) if needle in h), None)
    if index is None:
        return None  # not the user's words: an assistant's, or made up
    raw = row.get("confidence", DEFAULT_CONFIDENCE)
    confidence = float(raw) if isinstance(raw, int | float) else DEFAULT_CONFIDENCE
    return DetectedStatement(
        text=text,
        quote=quote[:QUOTE_CHARS],
        confidence=min(1.0, max(0.0, confidence)),
        message_index=index,
    )


def extract_statements(
    messages: Sequence[ChatMessage | str], backend: ModelBackend
) -> list[DetectedStatement]:
    """One model call. `messages`: the user's messages (plain strings, as
    detect_statements takes them) or the whole conversation as ChatMessages, which is
    better: assistant turns give a choice its context. message_index counts the user's
    messages only, as in statement_detector. Backend errors propagate (the job retries)."""
    conversation = [m if isinstance(m, ChatMessage) else ChatMessage("user", m) for m in messages]
    user_messages = [m.content for m in conversation if m.role == "user"]
    if not user_messages:
        return []
    prompt = [
        ChatMessage("system", SYSTEM),
        ChatMessage("user", render_conversation(conversation)),
    ]
    answer = backend.complete(prompt, SETTINGS).text
    return parse_statements(answer, user_messages)


def detector_with_model(
    backend: ModelBackend,
) -> Callable[[Sequence[str], Embedder], list[DetectedStatement]]:
    """The capture worker's reader when a capable model is configured: the model-free
    detector's explicit statements plus what the model extracts (implicit ones too).
    Repeats between the two are folded by the capture plan, like any repeat."""

    def detect(user_messages: Sequence[str], embedder: Embedder) -> list[DetectedStatement]:
        found = detect_statements(user_messages, embedder)
        return found + extract_statements(user_messages, backend)

    return detect
