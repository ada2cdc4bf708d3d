"""Rejects text that is not a first-person preference about the user: empty text,
refusals, and an assistant describing itself (which a model may echo back as if the
user had said it)."""

from __future__ import annotations

import re

_JUNK = re.compile(
    r"\bas an ai\b|\bI(?:'m| am) an? (?:ai|assistant|language model|chatbot)\b|\bsmollm\b"
    r"|\bI(?:'m| am) sorry\b|\bI (?:can't|cannot|won't) (?:help|assist|do that)\b"
    r"|\bhelpful (?:ai )?assistant\b",
    re.IGNORECASE,
)
_FIRST_PERSON = re.compile(r"\b(?:I|I'm|me|my|mine|please)\b", re.IGNORECASE)


def is_user_preference(text: str) -> bool:
    stripped = text.strip()
    if not stripped or _JUNK.search(stripped):
        return False
    return _FIRST_PERSON.search(stripped) is not None
