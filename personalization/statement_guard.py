"""Is a model's output a first-person preference about the user, fit to become a
suggested instruction? A small model asked to extract preferences sometimes returns a
self-description ("You're a helpful AI assistant named SmolLM"), a refusal, chatter
("Sure! Here's..."), an assistant's offer ("I'd be happy to help"), a question, or
nothing usable. Capture keeps only what passes; evals/junk.py flags stored junk with
the same rules. Measured on evals/data/capture/guard_labels.json (README, "Capture
quality"); the regexes are deliberately narrow, since a rejected preference is lost."""

from __future__ import annotations

import re

MIN_WORDS = 3  # "I am vegan." is the shortest preference worth keeping
MAX_CHARS = 240  # a stated preference is a sentence or two

_ASSISTANT = re.compile(
    r"\b(?:as an ai\b|as a language model|smollm|an ai (?:model|assistant)|"
    r"(?:you|i)(?:'re| are|'m| am) (?:a |an |your )?(?:helpful |friendly |virtual |personal )?"
    r"(?:ai|assistant|language model|chatbot|bot)\b"
    r"(?!\s+(?:developer|engineer|researcher|designer|startup|company|product|project))|"
    r"(?:my|your) name is \w+,? (?:a|an|your) |named \w+,? (?:a|an) (?:ai|assistant))",
    re.IGNORECASE,
)
_REFUSAL = re.compile(
    r"\b(?:i(?:'m| am) sorry|sorry,|i apologi[sz]e|i (?:cannot|can't|can not|am unable to|"
    r"'m unable to|am not able to|'m not able to|won't be able to|do not have|don't have) "
    r"(?:help|assist|provide|answer|comply|fulfil|fulfill|determine|infer|identify|tell|say|"
    r"know|access|do that|enough|any (?:information|preferences?)|personal))",
    re.IGNORECASE,
)
_OFFER = re.compile(
    r"\b(?:i(?:'d| would) (?:be (?:happy|glad)|love to help)|i(?:'m| am) (?:here|happy|glad) "
    r"to|i can (?:help|assist|provide|suggest|recommend)|how can i (?:help|assist)|let me know|"
    r"feel free|i hope (?:this|that) helps|i(?:'ll| will) (?:keep|remember|make sure|note|add)|"
    r"i(?:'m| am) going to (?:suggest|recommend|help|provide|give|add|list)|"
    r"(?:here's|here is) (?:the|a|my) (?:revised|updated))\b",
    re.IGNORECASE,
)
_CHATTER = re.compile(
    r"^\W*(?:sure|certainly|of course|absolutely|great question|here(?:'s| is| are)|okay|ok|"
    r"hello|hi|thanks|thank you|based on|the user|user:|assistant:|preference:|note:|"
    r"in this conversation|from the conversation|i(?:'m| am) not sure|great question|none)\b",
    re.IGNORECASE,
)
_OTHER_SUBJECT = re.compile(
    r"^\W*(?:you|you're|your|he|she|they|it|the user|users?|the assistant|assistant|people)\b",
    re.IGNORECASE,
)
_FIRST_PERSON_ANYWHERE = re.compile(r"\b(?:i|i'm|i've|i'd|my|me|mine|myself|we|our|us)\b", re.I)


def junk_reason(text: str | None) -> str | None:
    """Why `text` is not a usable first-person preference, or None when it looks like one."""
    stripped = " ".join((text or "").split())
    if len(stripped.split()) < MIN_WORDS:
        return "empty"
    if len(stripped) > MAX_CHARS:
        return "overlong"
    if _ASSISTANT.search(stripped):
        return "assistant self-description"
    if _REFUSAL.search(stripped):
        return "refusal or apology"
    if _OFFER.search(stripped):
        return "assistant offer"
    if _CHATTER.search(stripped):
        return "chatter"
    if stripped.endswith("?"):
        return "question"
    if not _FIRST_PERSON_ANYWHERE.search(stripped):
        return "not first person"
    return None


def is_user_preference(text: str) -> bool:
    """True for a first-person statement about the user; false for junk and for text
    whose subject is someone else ("You prefer...", "The user is...")."""
    return junk_reason(text) is None and _OTHER_SUBJECT.search(text) is None
