"""Finds preferences the user states about themself, in the user's own messages.

A minimal model-free detector: a few first-person patterns (allergies, diets, "I
prefer", "please don't", "I always/never", likes and dislikes, "I eat ... again"),
one statement per matching sentence. Only the user's messages may be passed in."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from personalization.embedder import Embedder

QUOTE_CHARS = 300

_SENTENCE = re.compile(r"[^.!?\n]+[.!?]?")
_PATTERNS: tuple[tuple[re.Pattern[str], float], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), confidence)
    for pattern, confidence in (
        (r"\bI(?:'m| am)\s+(?:\w+\s+)?allergic to\b", 0.95),
        (r"\bI(?:'m| am)\s+(?:a\s+|now\s+|strictly\s+)?(?:vegan|vegetarian|pescatarian)\b", 0.9),
        (r"\bI(?: really| strongly)? prefer\b", 0.85),
        (r"\bplease (?:don't|do not|never|always)\b", 0.8),
        (r"\bI (?:always|never)\b", 0.75),
        (r"\bI (?:do not|don't|no longer|now)? ?eat\b", 0.7),
        (r"\bI(?: really| absolutely)? (?:like|love|hate|dislike|can't stand)\b", 0.7),
    )
)


@dataclass(frozen=True)
class DetectedStatement:
    text: str  # the preference as a first-person standing instruction
    quote: str  # the user's own words, at most QUOTE_CHARS
    confidence: float
    message_index: int


def _as_instruction(sentence: str) -> str:
    text = " ".join(sentence.split()).strip(" ,;:")
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def detect_statements(user_messages: Sequence[str], embedder: Embedder) -> list[DetectedStatement]:
    """The first pattern that matches a sentence decides its confidence."""
    del embedder  # this version uses patterns only
    found: list[DetectedStatement] = []
    for index, message in enumerate(user_messages):
        for match in _SENTENCE.finditer(message):
            sentence = match.group().strip()
            if not sentence:
                continue
            for pattern, confidence in _PATTERNS:
                hit = pattern.search(sentence)
                if hit is None:
                    continue
                statement = sentence[hit.start() :]
                found.append(
                    DetectedStatement(
                        text=_as_instruction(statement),
                        quote=sentence[:QUOTE_CHARS],
                        confidence=confidence,
                        message_index=index,
                    )
                )
                break
    return found
