"""Reads PrefEval's own file layout, so the public benchmark (CC BY-NC, not shipped)
can be pointed at directly with `--data PATH`; evals/data/prefeval is our small
license-clean set in the same layout:

    explicit_preference/{topic}.json      [{preference, question, explanation, kind?}]
    implicit_preference/choice-based/     + implicit_query, options, conversation, aligned_op
    implicit_preference/persona-driven/   + persona, conversation {"0": {user, assistant}}
    mcq_options/{topic}.json              + classification_task_options (the first is correct)
    filtered_inter_turns.json             [{conversation: [{role, content}]}]

MCQ options belong to a position, not to a question: entry i of mcq_options/{topic}.json
is explicit entry i's, as in PrefEval's own code (the public set has questions that
appear twice in a topic with different options). An implicit file as long as the
explicit one is parallel to it (entry i is explicit entry i told implicitly, PrefEval's
layout); a shorter one (a subset, like our shipped set) is matched to the explicit
entry with the same preference and question.

`kind` ("constraint" or "style") is our own optional gold label, kept for the
selection-at-scale suite; PrefEval's files do not have it.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from personalization.messages import ChatMessage

SHIPPED = Path(__file__).resolve().parent.parent / "data" / "prefeval"

Form = Literal["explicit", "choice", "persona"]
Kind = Literal["constraint", "style"]
KINDS: tuple[Kind, ...] = ("constraint", "style")
FORMS: tuple[Form, ...] = ("explicit", "choice", "persona")
_FOLDERS: dict[Form, str] = {
    "explicit": "explicit_preference",
    "choice": "implicit_preference/choice-based",
    "persona": "implicit_preference/persona-driven",
}
# PrefEval has the model itself answer the stated preference; a fixed reply keeps that
# turn identical across arms, runs and models, so only the arms differ.
EXPLICIT_ACKNOWLEDGEMENT = "Thanks for telling me. I'll keep that in mind."


class DatasetError(ValueError):
    """The data folder is not in PrefEval's layout; the message says where and why."""


@dataclass(frozen=True, slots=True)
class PrefItem:
    key: str  # "{form}/{topic}/{index}", stable across runs: the cache and reports use it
    topic: str
    form: Form
    preference: str
    question: str
    explanation: str
    conversation: tuple[ChatMessage, ...]  # where the preference is stated or implied
    options: tuple[str, ...] | None  # MCQ options, the correct one first; None: no MCQ
    kind: Kind | None = None  # gold label where the data has one


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(f"{path}: missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: not readable JSON ({exc})") from None


def _text(entry: dict[str, Any], field: str, where: str) -> str:
    value = entry.get(field)
    if not isinstance(value, str) or not value.strip():
        raise DatasetError(f"{where}: `{field}` must be a non-empty string")
    return value.strip()


def _conversation(form: Form, entry: dict[str, Any], where: str) -> tuple[ChatMessage, ...]:
    if form == "explicit":
        return (
            ChatMessage("user", _text(entry, "preference", where)),
            ChatMessage("assistant", EXPLICIT_ACKNOWLEDGEMENT),
        )
    conv = entry.get("conversation")
    if not isinstance(conv, dict):
        raise DatasetError(f"{where}: `conversation` must be an object")
    if form == "choice":
        return (
            ChatMessage("user", _text(conv, "query", where)),
            ChatMessage("assistant", _text(conv, "assistant_options", where)),
            ChatMessage("user", _text(conv, "user_selection", where)),
            ChatMessage("assistant", _text(conv, "assistant_acknowledgment", where)),
        )
    turns: list[ChatMessage] = []
    try:
        order = sorted(conv, key=int)
    except ValueError:
        raise DatasetError(f"{where}: persona conversation keys must be numbers") from None
    for number in order:
        turn = conv[number]
        if not isinstance(turn, dict):
            raise DatasetError(f"{where}: conversation turn {number} must be an object")
        turns.append(ChatMessage("user", _text(turn, "user", where)))
        turns.append(ChatMessage("assistant", _text(turn, "assistant", where)))
    if not turns:
        raise DatasetError(f"{where}: empty conversation")
    return tuple(turns)


def _mcq_options(root: Path, topic: str, explicit: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """Options per explicit position; [] when the topic has no MCQ file."""
    path = root / "mcq_options" / f"{topic}.json"
    if not path.exists():
        return []
    entries = _list(path)
    if len(entries) < len(explicit):
        raise DatasetError(
            f"{path}: {len(entries)} entries for {len(explicit)} explicit ones "
            "(entry i belongs to explicit entry i)"
        )
    out: list[tuple[str, ...]] = []
    for n, entry in enumerate(entries[: len(explicit)]):
        where = f"{path}[{n}]"
        options = entry.get("classification_task_options")
        if not (
            isinstance(options, list)
            and len(options) == 4
            and all(isinstance(o, str) for o in options)
        ):
            raise DatasetError(f"{where}: `classification_task_options` must be 4 strings")
        question = entry.get("question")
        if (
            isinstance(question, str)
            and question.strip() != str(explicit[n].get("question")).strip()
        ):
            raise DatasetError(f"{where}: question differs from explicit entry {n}'s (misaligned)")
        out.append(tuple(o.strip() for o in options))
    return out


def _explicit_positions(
    entries: list[dict[str, Any]], explicit: list[dict[str, Any]], path: Path
) -> list[int | None]:
    """For each implicit entry, the explicit entry it tells implicitly (None: none)."""
    if len(entries) == len(explicit):
        return list(range(len(entries)))
    out: list[int | None] = []
    for n, entry in enumerate(entries):
        same = [i for i, e in enumerate(explicit) if _pair(e) == _pair(entry)]
        if len(same) > 1:
            raise DatasetError(
                f"{path}[{n}]: matches explicit entries {same}; make the file parallel to "
                "the explicit one (same length and order) to say which"
            )
        out.append(same[0] if same else None)
    return out


def _pair(entry: dict[str, Any]) -> tuple[str, str]:
    return (str(entry.get("preference", "")).strip(), str(entry.get("question", "")).strip())


def _kind(entry: dict[str, Any], where: str) -> Kind | None:
    value = entry.get("kind")
    if value is None:
        return None
    if value not in KINDS:
        raise DatasetError(f"{where}: `kind` must be one of {', '.join(KINDS)}")
    return "constraint" if value == "constraint" else "style"


def _list(path: Path) -> list[dict[str, Any]]:
    data = _read(path)
    if not isinstance(data, list) or not all(isinstance(e, dict) for e in data):
        raise DatasetError(f"{path}: must be a JSON list of objects")
    return data


def topics(root: Path) -> list[str]:
    folder = root / _FOLDERS["explicit"]
    if not folder.is_dir():
        raise DatasetError(f"{root}: no {_FOLDERS['explicit']}/ folder (not PrefEval's layout)")
    return sorted(p.stem for p in folder.glob("*.json"))


def load_items(
    root: Path = SHIPPED, forms: tuple[Form, ...] = FORMS, only_topics: list[str] | None = None
) -> list[PrefItem]:
    chosen = only_topics or topics(root)
    items: list[PrefItem] = []
    for topic in chosen:
        explicit = _list(root / _FOLDERS["explicit"] / f"{topic}.json")
        options = _mcq_options(root, topic, explicit)
        for form in forms:
            path = root / _FOLDERS[form] / f"{topic}.json"
            if form != "explicit" and not path.exists():
                continue  # the implicit forms are optional per topic
            entries = explicit if form == "explicit" else _list(path)
            positions = _explicit_positions(entries, explicit, path)
            for n, (entry, position) in enumerate(zip(entries, positions, strict=True)):
                where = f"{path}[{n}]"
                items.append(
                    PrefItem(
                        key=f"{form}/{topic}/{n}",
                        topic=topic,
                        form=form,
                        preference=_text(entry, "preference", where),
                        question=_text(entry, "question", where),
                        explanation=str(entry.get("explanation", "")),
                        conversation=_conversation(form, entry, where),
                        options=options[position] if options and position is not None else None,
                        kind=_kind(entry, where),
                    )
                )
    return items


def load_filler(root: Path = SHIPPED) -> list[tuple[ChatMessage, ChatMessage]]:
    """Every (user, assistant) turn of filtered_inter_turns.json, in file order."""
    path = root / "filtered_inter_turns.json"
    turns: list[tuple[ChatMessage, ChatMessage]] = []
    for n, entry in enumerate(_list(path)):
        messages = entry.get("conversation")
        if not isinstance(messages, list):
            raise DatasetError(f"{path}[{n}]: `conversation` must be a list")
        parsed = [
            ChatMessage(str(m.get("role")), _text(m, "content", f"{path}[{n}]"))
            for m in messages
            if isinstance(m, dict)
        ]
        for user, assistant in zip(parsed[::2], parsed[1::2], strict=False):
            if (user.role, assistant.role) != ("user", "assistant"):
                raise DatasetError(f"{path}[{n}]: turns must alternate user, assistant")
            turns.append((user, assistant))
    if not turns:
        raise DatasetError(f"{path}: no filler turns")
    return turns


def filler_turns(
    pool: list[tuple[ChatMessage, ChatMessage]], n: int
) -> tuple[list[ChatMessage], bool]:
    """The first n turns, as PrefEval takes them; a pool shorter than n is repeated
    (reported as `filler_repeated`, since the model then sees the same chat twice)."""
    out: list[ChatMessage] = []
    for i in range(n):
        out.extend(pool[i % len(pool)])
    return out, n > len(pool)


def shuffled_options(item: PrefItem, seed: int) -> tuple[list[str], int]:
    """The options in a fixed per-item order, and where the correct (first) one went."""
    assert item.options is not None
    order = list(range(len(item.options)))
    random.Random(f"{seed}:{item.key}").shuffle(order)  # noqa: S311 (reproducible order)
    return [item.options[i] for i in order], order.index(0)
