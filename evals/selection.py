"""Standing-instruction selection quality (NLSI-style): precision, recall and F1 of
the set /context selects, against turns labelled with the instructions that apply.

The dataset format (see evals/data/selection_basic.json): `instructions` with a
`key`, `text`, optional `applies_when` and `always_on`; `turns` with `text` and the
`relevant` keys of conditional instructions. Always-on ones are scored separately:
they must be selected on every turn."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evals.client import TailorClient

DATA_DIR = Path(__file__).resolve().parent / "data"


@dataclass(frozen=True, slots=True)
class TurnResult:
    text: str
    relevant: frozenset[str]
    selected: tuple[str, ...]  # conditional keys, in the order /context ranked them
    always_on_missing: frozenset[str]


@dataclass
class SelectionReport:
    always_on_count: int
    turns: list[TurnResult] = field(default_factory=list)

    def _counts(self) -> tuple[int, int, int]:
        tp = sum(len(set(t.selected) & t.relevant) for t in self.turns)
        fp = sum(len(set(t.selected) - t.relevant) for t in self.turns)
        fn = sum(len(t.relevant - set(t.selected)) for t in self.turns)
        return tp, fp, fn

    @property
    def precision(self) -> float:
        tp, fp, _ = self._counts()
        return tp / (tp + fp) if tp + fp else 1.0

    @property
    def recall(self) -> float:
        tp, _, fn = self._counts()
        return tp / (tp + fn) if tp + fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def always_on_recall(self) -> float:
        missing = sum(len(t.always_on_missing) for t in self.turns)
        return 1.0 - missing / max(1, len(self.turns) * self.always_on_count)

    def as_dict(self) -> dict[str, Any]:
        return {
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "f1": round(self.f1, 4),
            "always_on_recall": round(self.always_on_recall, 4),
            "turns": len(self.turns),
        }


def load_dataset(path: Path | None = None) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((path or DATA_DIR / "selection_basic.json").read_text())
    return data


def evaluate_selection(
    dataset: dict[str, Any], selected_keys: Callable[[str], list[str]]
) -> SelectionReport:
    """`selected_keys(turn_text)` returns the keys of what /context selected, in order;
    the caller maps ids to keys (it created the instructions)."""
    always = {i["key"] for i in dataset["instructions"] if i.get("always_on")}
    report = SelectionReport(always_on_count=len(always))
    for turn in dataset["turns"]:
        chosen = selected_keys(turn["text"])
        report.turns.append(
            TurnResult(
                text=turn["text"],
                relevant=frozenset(turn["relevant"]),
                selected=tuple(k for k in chosen if k not in always),
                always_on_missing=frozenset(always - set(chosen)),
            )
        )
    return report


SELECTION_USER = "tailor-eval-selection"


def run_selection(client: TailorClient, dataset: dict[str, Any]) -> dict[str, Any]:
    """The suite over the public API: one user holding the dataset's instructions, one
    /context call per labelled turn; the user is removed afterwards."""
    client.fresh_user(SELECTION_USER)
    try:
        key_of: dict[str, str] = {}
        for item in dataset["instructions"]:
            body = {k: v for k, v in item.items() if k not in {"key", "text"}}
            key_of[client.add_instruction(SELECTION_USER, item["text"], **body)] = item["key"]

        def selected(text: str) -> list[str]:
            found = client.context(SELECTION_USER, text)["instructions"]
            return [key_of[str(i["id"])] for i in found]

        report = evaluate_selection(dataset, selected)
    finally:
        client.delete_user(SELECTION_USER)
    return {
        **report.as_dict(),
        "instructions": len(dataset["instructions"]),
        "per_turn": [
            {
                "text": t.text,
                "relevant": sorted(t.relevant),
                "selected": list(t.selected),
                "always_on_missing": sorted(t.always_on_missing),
            }
            for t in report.turns
        ],
    }


def metrics(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"name": f"selection.{name}", "value": report[name], "n": report["turns"], "kind": "rate"}
        for name in ("precision", "recall", "f1", "always_on_recall")
    ]
