"""Reads the capture evaluation set (evals/data/capture/{split}/), PrefEval's layout
with one addition, so a split can be pointed at like PrefEval's own folders:

    explicit_preference/{topic}.json     [{preference, conversation: [{role, content}]}]
        the preference is the gold, stated somewhere in the user's turns (alone,
        mid-message, with chit-chat around)
    implicit_preference/choice-based/    PrefEval's entries; the preference is implied
    implicit_preference/persona-driven/  by a choice or a persona conversation
    negatives.json                       [{kind, conversation}] turns that state no
        preference of the user: questions, hypotheticals, third-person, reported
        speech, one-off tasks, assistant turns that state the assistant's taste
    filtered_inter_turns.json            PrefEval's filler layout; states nothing
    first_person_filler.json             the same layout: first-person turns about the
        task at hand ("I need help with my essay.") that state no lasting preference

The split was made once, up front (evals/data/capture/README.md): thresholds and the
classifier are fitted on dev only."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from evals.prefeval.data import DatasetError, _conversation, _list, _read
from personalization.messages import ChatMessage

CAPTURE_DATA = Path(__file__).resolve().parent / "data" / "capture"
SPLITS = ("dev", "heldout", "heldout2", "heldout3", "heldout4")

# PrefEval's filler and ours of first-person turns that state no lasting preference
# ("I need help with my essay.", "I have a meeting at 3pm.")
FILLER_FILES = {"filtered_inter_turns.json": "filler", "first_person_filler.json": "first_person"}

CaseKind = Literal["explicit", "choice", "persona", "negative", "filler"]


@dataclass(frozen=True, slots=True)
class CaptureCase:
    key: str  # "{split}/{kind}/{topic or kind}/{index}", stable across runs
    kind: CaseKind
    topic: str
    conversation: tuple[ChatMessage, ...]
    gold: str | None  # the stated preference; None where nothing is stated

    @property
    def user_messages(self) -> list[str]:
        return [m.content for m in self.conversation if m.role == "user"]


def _messages(raw: object, where: str) -> tuple[ChatMessage, ...]:
    if not isinstance(raw, list) or not raw:
        raise DatasetError(f"{where}: `conversation` must be a non-empty list")
    out = []
    for n, m in enumerate(raw):
        if not isinstance(m, dict) or m.get("role") not in {"user", "assistant"}:
            raise DatasetError(f"{where}: message {n} needs role user or assistant")
        content = m.get("content")
        if not isinstance(content, str) or not content.strip():
            raise DatasetError(f"{where}: message {n} needs non-empty content")
        out.append(ChatMessage(m["role"], content))
    return tuple(out)


def load_split(root: Path, split: str) -> list[CaptureCase]:
    base = root / split
    if not base.is_dir():
        raise DatasetError(f"{base}: missing (expected {', '.join(SPLITS)} under {root})")
    cases: list[CaptureCase] = []
    for path in sorted((base / "explicit_preference").glob("*.json")):
        for n, entry in enumerate(_list(path)):
            where = f"{path}[{n}]"
            gold = entry.get("preference")
            if not isinstance(gold, str) or not gold.strip():
                raise DatasetError(f"{where}: `preference` must be a non-empty string")
            cases.append(
                CaptureCase(
                    f"{split}/explicit/{path.stem}/{n}",
                    "explicit",
                    path.stem,
                    _messages(entry.get("conversation"), where),
                    gold.strip(),
                )
            )
    for form, folder in (("choice", "choice-based"), ("persona", "persona-driven")):
        for path in sorted((base / "implicit_preference" / folder).glob("*.json")):
            for n, entry in enumerate(_list(path)):
                where = f"{path}[{n}]"
                conversation = _conversation(form, entry, where)  # type: ignore[arg-type]
                kind: CaseKind = "choice" if form == "choice" else "persona"
                cases.append(
                    CaptureCase(
                        f"{split}/{form}/{path.stem}/{n}",
                        kind,
                        path.stem,
                        conversation,
                        str(entry["preference"]).strip(),
                    )
                )
    negatives = base / "negatives.json"
    if negatives.exists():
        for n, entry in enumerate(_list(negatives)):
            where = f"{negatives}[{n}]"
            label = str(entry.get("kind", "negative"))
            cases.append(
                CaptureCase(
                    f"{split}/negative/{label}/{n}",
                    "negative",
                    label,
                    _messages(entry.get("conversation"), where),
                    None,
                )
            )
    for name, topic in FILLER_FILES.items():
        filler = base / name
        raw = _read(filler) if filler.exists() else []
        if not isinstance(raw, list):
            raise DatasetError(f"{filler}: must be a list")
        for n, entry in enumerate(raw):
            where = f"{filler}[{n}]"
            if not isinstance(entry, dict):
                raise DatasetError(f"{where}: must be an object")
            cases.append(
                CaptureCase(
                    f"{split}/filler/{topic}/{n}",
                    "filler",
                    topic,
                    _messages(entry.get("conversation"), where),
                    None,
                )
            )
    if not any(c.kind == "explicit" for c in cases):
        raise DatasetError(f"{base}: no explicit_preference/*.json entries")
    return cases
