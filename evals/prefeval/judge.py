"""PrefEval's judged generation: four yes/no checks on a response, combined into the
paper's error types. The judge is any ModelBackend (the model behind Tailor, the
embedded one, or an OpenAI-compatible server), so a stronger judge is a flag away.

Error types (checked in this order):
- hallucination: acknowledges a preference the user did not state;
- unaware violation: violates the preference without mentioning it;
- inconsistent violation: mentions the preference, still violates it;
- unhelpful: no violation, but does not answer the question;
- followed: none of the above (preference-following accuracy counts these)."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from personalization.backends import GenerationSettings, ModelBackend
from personalization.messages import ChatMessage

CHECKS = ("violation", "acknowledgement", "hallucination", "helpful")
ERROR_TYPES = (
    "followed",
    "unaware_violation",
    "hallucination",
    "inconsistent_violation",
    "unhelpful",
    "judge_unparsed",
)
LABELLED = Path(__file__).resolve().parent.parent / "data" / "judge_labels.json"

_QUESTIONS = {
    "violation": (
        "Does the response recommend or do something that goes against the user's stated "
        "preference?"
    ),
    "acknowledgement": (
        "Does the response explicitly mention or refer to a preference, constraint or "
        "personal detail of the user?"
    ),
    "hallucination": (
        "Does the response attribute to the user a preference or personal detail that is "
        "different from, or not in, the stated preference?"
    ),
    "helpful": "Does the response make a real attempt to answer the question asked?",
}
_YES_NO = re.compile(r"\W*(yes|no)\b", re.IGNORECASE)


def judge_prompt(check: str, preference: str, question: str, response: str) -> str:
    return (
        "You are grading an assistant's answer.\n\n"
        f"The user's stated preference: {preference}\n"
        f"The user's question: {question}\n"
        f"The assistant's response: {response}\n\n"
        f"{_QUESTIONS[check]} Answer with yes or no."
    )


def parse_yes_no(answer: str) -> bool | None:
    found = _YES_NO.match(answer)
    return None if found is None else found.group(1).lower() == "yes"


@dataclass(frozen=True, slots=True)
class Verdict:
    violation: bool | None
    acknowledgement: bool | None
    hallucination: bool | None
    helpful: bool | None

    @property
    def error_type(self) -> str:
        v, a, h, helpful = self.violation, self.acknowledgement, self.hallucination, self.helpful
        if None in (v, a, helpful) or (a and h is None):
            return "judge_unparsed"
        if a and h:
            return "hallucination"
        if v and not a:
            return "unaware_violation"
        if v:
            return "inconsistent_violation"
        if not helpful:
            return "unhelpful"
        return "followed"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "error_type": self.error_type}


class Judge:
    def __init__(self, backend: ModelBackend, *, max_tokens: int = 4) -> None:
        self._backend = backend
        self._settings = GenerationSettings(max_tokens=max_tokens, temperature=0.0, seed=0)

    @property
    def model_id(self) -> str:
        return self._backend.model_id

    def check(self, check: str, preference: str, question: str, response: str) -> bool | None:
        prompt = judge_prompt(check, preference, question, response)
        done = self._backend.complete([ChatMessage("user", prompt)], self._settings)
        return parse_yes_no(done.text)

    def verdict(self, preference: str, question: str, response: str) -> Verdict:
        found = {c: self.check(c, preference, question, response) for c in CHECKS}
        return Verdict(**found)


def load_labelled(path: Path = LABELLED) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))["items"]
    return items


def cohen_kappa(pairs: list[tuple[bool, bool]]) -> float | None:
    """Agreement beyond chance; None when undefined (one class only on both sides)."""
    n = len(pairs)
    if not n:
        return None
    observed = sum(a == b for a, b in pairs) / n
    p_yes = (sum(a for a, _ in pairs) / n) * (sum(b for _, b in pairs) / n)
    p_no = (sum(not a for a, _ in pairs) / n) * (sum(not b for _, b in pairs) / n)
    expected = p_yes + p_no
    return None if expected == 1 else (observed - expected) / (1 - expected)


def agreement(
    verdicts: list[dict[str, Any]], labelled: list[dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Per check: how often the judge matched the hand labels, Cohen's kappa, and how
    often it gave no parsable answer (counted as a disagreement)."""
    out: dict[str, dict[str, Any]] = {}
    for check in CHECKS:
        pairs = [
            (bool(v[check]), bool(item["labels"][check]))
            for v, item in zip(verdicts, labelled, strict=True)
            if v[check] is not None
        ]
        unparsed = sum(v[check] is None for v in verdicts)
        matched = sum(a == b for a, b in pairs)
        kappa = cohen_kappa(pairs)
        out[check] = {
            "n": len(labelled),
            "agreement": round(matched / len(labelled), 4) if labelled else None,
            "kappa": None if kappa is None else round(kappa, 4),
            "unparsed": unparsed,
        }
    types = sum(
        Verdict(**{c: v[c] for c in CHECKS}).error_type == Verdict(**item["labels"]).error_type
        for v, item in zip(verdicts, labelled, strict=True)
    )
    out["error_type"] = {
        "n": len(labelled),
        "agreement": round(types / len(labelled), 4) if labelled else None,
    }
    return out
