"""What a captured statement does to the profile, decided without a model.

- It *repeats* a known item (an active standing instruction, or a pending or rejected
  suggestion) when their normalised texts are equal, or when both have the same
  polarity and their embeddings' cosine is at least DUPLICATE_COSINE (0.85). Measured
  with MiniLM on 13 hand-written pairs (a sample, not a benchmark): rewordings of one
  statement scored 0.82-0.95 ("I'm vegetarian." / "I am a vegetarian." 0.945), different
  statements of the same polarity at most 0.75 ("I prefer tea." / "I prefer coffee."),
  and polarity flips up to 0.85 ("I love spicy food." / "I hate spicy food." 0.83),
  which is why polarity must agree too. A repeat reinforces that item and creates
  nothing; a rewording below the threshold becomes a suggestion the user can reject.
  Repeating a rejected suggestion only counts it: it is never suggested again.
- It *contradicts* an active standing instruction when they talk about the same
  subject with opposite polarity, or when one states a diet and the other says the
  user eats a food that diet excludes. Then the suggestion supersedes that instruction.
- Otherwise it is a new suggestion.

The contradiction rule, and its limits: the subject is a statement's content words
(stop words, polarity words and common preference verbs removed, plural "s" dropped);
two subjects match when their Jaccard overlap is at least SAME_SUBJECT (0.6). The
polarity is the parity of negative markers ("not", "never", "no longer", "hate",
"avoid", "allergic", ...): "I'm allergic to peanuts" against "I'm no longer allergic
to peanuts" flips it. It misses contradictions phrased with no shared words outside
the diet table ("I prefer tea" against "coffee is my favourite"), replacements of one
taste by another ("I prefer tea" after "I prefer coffee"), and it can misread negation
scope ("I don't mind spicy food" reads as negative). A missed contradiction becomes a
`new` suggestion, which the user still reviews; nothing is superseded silently."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from personalization.statement_detector import DetectedStatement

DUPLICATE_COSINE = 0.85
SAME_SUBJECT = 0.6
KEY_CHARS = 200

_WORD = re.compile(r"[a-z0-9']+")
_NEGATIVE = {
    "not",
    "never",
    "no",
    "don't",
    "dont",
    "doesn't",
    "can't",
    "cannot",
    "won't",
    "isn't",
    "aren't",
    "hate",
    "hates",
    "dislike",
    "dislikes",
    "avoid",
    "allergic",
    "stop",
    "stopped",
    "quit",
    "without",
    "anymore",
}
_FILLER = {
    "i",
    "i'm",
    "im",
    "am",
    "me",
    "my",
    "a",
    "an",
    "the",
    "to",
    "of",
    "and",
    "or",
    "in",
    "on",
    "at",
    "for",
    "with",
    "is",
    "are",
    "be",
    "do",
    "does",
    "please",
    "really",
    "very",
    "so",
    "just",
    "now",
    "again",
    "any",
    "more",
    "longer",
    "always",
    "actually",
    "also",
    "like",
    "likes",
    "love",
    "loves",
    "enjoy",
    "prefer",
    "want",
    "eat",
    "use",
    "keep",
    "that",
    "this",
    "it",
    "mind",
}
# A diet and the foods it excludes: "I eat fish again now" contradicts "I'm vegetarian".
_MEAT = {"meat", "beef", "pork", "chicken", "steak", "bacon", "ham", "lamb", "turkey", "sausage"}
_SEAFOOD = {"fish", "seafood", "salmon", "tuna", "shrimp", "prawn", "shellfish", "sushi"}
_ANIMAL = {"dairy", "milk", "cheese", "egg", "eggs", "butter", "honey", "yogurt"}
_DIETS: dict[str, set[str]] = {
    "vegetarian": _MEAT | _SEAFOOD,
    "vegan": _MEAT | _SEAFOOD | _ANIMAL,
    "pescatarian": _MEAT,
}


def text_key(text: str) -> str:
    """Normalised text: case, spacing, punctuation and contractions do not matter."""
    text = text.lower().replace("\u2019", "'")
    text = re.sub(r"\bi'm\b", "i am", text)
    text = re.sub(r"n't\b", " not", text)
    return " ".join(re.findall(r"[a-z0-9]+", text))[:KEY_CHARS]


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("\u2019", "'"))


def polarity(text: str) -> int:
    """+1 or -1: the parity of negative markers ("no longer" counts once)."""
    negatives = sum(1 for word in _words(text.replace("no longer", "not")) if word in _NEGATIVE)
    return -1 if negatives % 2 else 1


def subject(text: str) -> frozenset[str]:
    kept = (w for w in _words(text) if w not in _NEGATIVE and w not in _FILLER)
    return frozenset(w[:-1] if len(w) > 3 and w.endswith("s") else w for w in kept)


def _diet(words: set[str]) -> str | None:
    return next((diet for diet in _DIETS if diet in words), None)


def _diet_conflict(a: str, b: str) -> bool:
    """One states a diet (positively), the other says the user eats a food it excludes."""
    for diet_text, food_text in ((a, b), (b, a)):
        words = set(_words(diet_text))
        diet = _diet(words)
        if diet is None or polarity(diet_text) < 0:
            continue
        foods = set(_words(food_text))
        if foods & _DIETS[diet] and _diet(foods) is None and polarity(food_text) > 0:
            return True
    return False


def contradicts(statement: str, instruction: str) -> bool:
    if _diet_conflict(statement, instruction):
        return True
    a, b = subject(statement), subject(instruction)
    if not a or not b:
        return False
    same_subject = len(a & b) / len(a | b) >= SAME_SUBJECT
    return same_subject and polarity(statement) != polarity(instruction)


@dataclass(frozen=True)
class KnownItem:
    """An item a statement may repeat: an active instruction (which it may also
    contradict) or a pending or rejected suggestion. `vector` is None when it was
    embedded by another model (then only the text is compared)."""

    kind: Literal["instruction", "suggestion"]
    id: uuid.UUID
    text: str
    vector: npt.NDArray[np.float32] | None


@dataclass(frozen=True)
class Proposal:
    statement: DetectedStatement
    key: str
    vector: npt.NDArray[np.float32]
    action: Literal["new", "supersede"]
    target_instruction_id: uuid.UUID | None


@dataclass(frozen=True)
class Reinforcement:
    kind: Literal["instruction", "suggestion"]
    id: uuid.UUID


@dataclass(frozen=True)
class CapturePlan:
    proposals: list[Proposal]
    reinforcements: list[Reinforcement]


def _repeats(
    key: str, text: str, vector: npt.NDArray[np.float32], other_key: str, other: KnownItem
) -> bool:
    if key == other_key:
        return True
    if other.vector is None or polarity(text) != polarity(other.text):
        return False
    return float(np.dot(vector, other.vector)) >= DUPLICATE_COSINE


def plan_capture(
    statements: Sequence[DetectedStatement],
    vectors: npt.NDArray[np.float32],
    known: Sequence[KnownItem],
) -> CapturePlan:
    """`vectors[i]` is statement i's unit-length embedding. A statement repeated within
    the same conversation is proposed once."""
    keys = {item.id: text_key(item.text) for item in known}
    proposals: list[Proposal] = []
    reinforcements: list[Reinforcement] = []
    for statement, vector in zip(statements, vectors, strict=True):
        key = text_key(statement.text)
        if not key:
            continue
        repeated = next(
            (item for item in known if _repeats(key, statement.text, vector, keys[item.id], item)),
            None,
        )
        if repeated is not None:
            reinforcements.append(Reinforcement(repeated.kind, repeated.id))
            continue
        if any(_repeats(key, statement.text, vector, p.key, _as_known(p)) for p in proposals):
            continue
        target = next(
            (
                item.id
                for item in known
                if item.kind == "instruction" and contradicts(statement.text, item.text)
            ),
            None,
        )
        action: Literal["new", "supersede"] = "new" if target is None else "supersede"
        proposals.append(Proposal(statement, key, vector, action, target))
    return CapturePlan(proposals, reinforcements)


def _as_known(proposal: Proposal) -> KnownItem:
    return KnownItem("suggestion", uuid.UUID(int=0), proposal.statement.text, proposal.vector)
