"""Is a stored profile item junk? The tailor arm stores what a model inferred from a
conversation, and a small model sometimes returns a self-description ("You're a
helpful AI assistant named SmolLM"), a refusal, chatter, or nothing usable; the
report flags those so a figure is not read as measuring preferences it never held.
One function on purpose: a later change moves the same guard into the product."""

from __future__ import annotations

import re

MAX_CHARS = 240  # a stated preference is a sentence or two; the runner cuts at 300

_ASSISTANT = re.compile(
    r"\b(?:as an ai\b|as a language model|smollm|(?:you|i)(?:'re| are|'m| am) (?:a |an )?"
    r"(?:helpful |friendly )?(?:ai|assistant|language model|chatbot)\b"
    r"(?!\s+(?:developer|engineer|researcher|designer|startup|company|product|project)))",
    re.IGNORECASE,
)
_REFUSAL = re.compile(
    r"\b(?:i(?:'m| am) sorry|sorry,|i apologi[sz]e|i (?:cannot|can't|can not|am unable to|"
    r"'m unable to|am not able to|'m not able to|won't be able to) (?:help|assist|provide|"
    r"answer|comply|fulfil|fulfill|determine|infer|identify|tell|say|know|access|do that))",
    re.IGNORECASE,
)
_CHATTER = re.compile(
    r"^\W*(?:sure|certainly|of course|absolutely|great question|here(?:'s| is)|okay|ok|"
    r"hello|hi|thanks|thank you|based on the conversation)\b",
    re.IGNORECASE,
)
_FIRST_PERSON = re.compile(r"\b(?:i|i'm|i've|i'd|i'll|my|me|mine|myself|we|our|us)\b", re.I)


def junk_reason(text: str | None) -> str | None:
    """Why `text` is not a usable first-person preference, or None when it looks like one."""
    stripped = (text or "").strip()
    if not stripped:
        return "empty"
    if len(stripped) > MAX_CHARS:
        return "overlong"
    if _ASSISTANT.search(stripped):
        return "assistant self-description"
    if _REFUSAL.search(stripped):
        return "refusal or apology"
    if _CHATTER.search(stripped):
        return "chatter"
    if not _FIRST_PERSON.search(stripped):
        return "not first person"
    return None
