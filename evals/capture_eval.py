"""capture: does Tailor notice the preferences users state in conversation, and only
those? Scored per split (dev for tuning, held-out the figure that counts) on
evals/data/capture (evals/capture_data.py), from a list of captured statements per
conversation. Two sources give that list:

- `detector`: personalization.statement_detector.detect_statements on the user's
  messages, in this process (the embedded default's capture, model-free);
- `api`: the product path, each conversation submitted for a fresh user through
  POST /v1/users/{id}/conversations, waited for, and its pending suggestions read
  (evals/capture_client.py).

Matching (documented in README "Capture quality"): a captured statement matches the
gold preference when the cosine of their MiniLM vectors is at least MATCH_COSINE.
The threshold was set on dev by reading every pair near it; the report lists each
split's matched pairs closest to the threshold so a reader can check it by hand.

Figures per split:
- explicit_recall: explicit conversations with a captured statement matching the gold;
- implicit_recall: the same for choice- and persona-driven ones (reported, not gated
  with the embedded default, which is not built to infer them);
- precision: captured statements that match their conversation's gold, over all
  statements captured from every conversation of the split (explicit, negatives,
  filler): an extra statement in an explicit conversation counts against it;
- false_per_100_filler_turns: statements captured from filler conversations per 100
  of their user turns (they state nothing): PrefEval's filler, and first-person turns
  about the task at hand ("I need help with my essay"), also per source;
- negatives_clean: negative conversations (questions, hypotheticals, third person,
  reported speech, tasks, assistant taste) from which nothing was captured."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tqdm import tqdm

from evals.capture_client import CaptureClient
from evals.capture_data import CAPTURE_DATA, SPLITS, CaptureCase, load_split
from evals.stats import proportion
from personalization.embedder import Embedder
from personalization.statement_detector import detect_statements
from personalization.statement_guard import is_user_preference, junk_reason

SUITE = "capture"
GUARD_LABELS = CAPTURE_DATA / "guard_labels.json"
HEADLINE = "heldout4"
MATCH_COSINE = 0.6
IMPLICIT = ("choice", "persona")

Capture = Callable[[CaptureCase], list[str]]


@dataclass(frozen=True)
class CaptureConfig:
    data: Path = CAPTURE_DATA
    splits: tuple[str, ...] = SPLITS
    source: str = "detector"  # or "api"
    limit: int | None = None  # the first N conversations of each kind per split (a quick run)


@dataclass
class Scored:
    case: CaptureCase
    captured: list[str]
    best: float | None = None  # the best cosine to gold, where there is a gold
    matched: list[bool] = field(default_factory=list)


def detector_source(embedder: Embedder) -> Capture:
    def capture(case: CaptureCase) -> list[str]:
        return [s.text for s in detect_statements(case.user_messages, embedder)]

    return capture


class FreshUsers(Protocol):
    """What the api source needs to give each conversation a user of its own."""

    def fresh_user(self, user_id: str) -> None: ...
    def delete_user(self, user_id: str) -> None: ...


def api_source(users: FreshUsers, capture: CaptureClient, *, timeout_s: float = 600.0) -> Capture:
    """Each conversation for a fresh user, so its pending suggestions are its own."""

    def run(case: CaptureCase) -> list[str]:
        user = "tailor-eval-capture-" + hashlib.sha256(case.key.encode()).hexdigest()[:16]
        users.fresh_user(user)
        try:
            status, found = capture.capture(user, case.conversation, timeout_s=timeout_s)
            if status != "done":
                raise RuntimeError(f"capture of {case.key} ended {status}")
            return [s.text for s in found]
        finally:
            users.delete_user(user)

    return run


def score(
    cases: Sequence[CaptureCase], captured: Sequence[list[str]], embedder: Embedder
) -> list[Scored]:
    out: list[Scored] = []
    for case, texts in zip(cases, captured, strict=True):
        scored = Scored(case, list(texts))
        if case.gold is not None and texts:
            vectors = embedder.embed([case.gold, *texts])
            sims = vectors[1:] @ vectors[0]
            scored.best = round(float(sims.max()), 4)
            scored.matched = [float(s) >= MATCH_COSINE for s in sims]
        else:
            scored.matched = [False] * len(texts)
        out.append(scored)
    return out


def summarize(scored: Sequence[Scored]) -> dict[str, Any]:
    def recall(kinds: tuple[str, ...]) -> dict[str, Any]:
        rows = [s for s in scored if s.case.kind in kinds]
        return proportion(sum(any(s.matched) for s in rows), len(rows))

    captured = [
        m for s in scored if s.case.kind in ("explicit", "negative", "filler") for m in s.matched
    ]
    filler = [s for s in scored if s.case.kind == "filler"]
    filler_turns = sum(len(s.case.user_messages) for s in filler)
    false_filler = sum(len(s.captured) for s in filler)
    by_filler: dict[str, dict[str, int]] = {}
    for s in filler:
        row = by_filler.setdefault(s.case.topic, {"turns": 0, "captured": 0})
        row["turns"] += len(s.case.user_messages)
        row["captured"] += len(s.captured)
    negatives = [s for s in scored if s.case.kind == "negative"]
    near = sorted(
        (s for s in scored if s.best is not None and s.case.kind == "explicit"),
        key=lambda s: abs((s.best or 0.0) - MATCH_COSINE),
    )[:8]
    return {
        "explicit_recall": recall(("explicit",)),
        "implicit_recall": recall(IMPLICIT),
        "precision": proportion(sum(captured), len(captured)),
        "false_per_100_filler_turns": round(100 * false_filler / filler_turns, 2)
        if filler_turns
        else None,
        "filler_turns": filler_turns,
        "false_filler": false_filler,
        "filler_by_source": by_filler,
        "negatives_clean": proportion(sum(not s.captured for s in negatives), len(negatives)),
        "near_threshold": [
            {"gold": s.case.gold, "captured": s.captured, "cosine": s.best} for s in near
        ],
        "false_captures": [
            {
                "key": s.case.key,
                "captured": [t for t, m in zip(s.captured, s.matched, strict=True) if not m],
            }
            for s in scored
            if not all(s.matched) and s.case.kind in ("explicit", "negative", "filler")
        ],
        "missed": [
            {"key": s.case.key, "gold": s.case.gold, "captured": s.captured}
            for s in scored
            if s.case.kind == "explicit" and not any(s.matched)
        ],
    }


def guard_report(path: Path = GUARD_LABELS) -> dict[str, Any]:
    """The guard (statement_guard.is_user_preference) on labelled model outputs: real
    preferences (`preference: true`) against junk, some of it the embedded SmolLM's own
    output (`source: smollm`). Precision and recall are of keeping preferences."""
    rows = json.loads(path.read_text(encoding="utf-8"))
    kept = [(bool(r["preference"]), is_user_preference(str(r["text"])), r) for r in rows]
    true_pos = sum(gold and ok for gold, ok, _ in kept)
    junk = [r for gold, _, r in kept if not gold]
    return {
        "data": str(path),
        "precision": proportion(true_pos, sum(ok for _, ok, _ in kept)),
        "recall": proportion(true_pos, sum(gold for gold, _, _ in kept)),
        "junk_rejected": proportion(sum(not ok for gold, ok, _ in kept if not gold), len(junk)),
        "smollm_junk_rejected": proportion(
            sum(not ok for gold, ok, r in kept if not gold and r.get("source") == "smollm"),
            sum(r.get("source") == "smollm" for r in junk),
        ),
        "errors": [
            {"text": r["text"], "preference": gold, "reason": junk_reason(str(r["text"]))}
            for gold, ok, r in kept
            if gold != ok
        ],
    }


def run(
    capture: Capture,
    embedder: Embedder,
    cfg: CaptureConfig,
    progress: bool = True,
) -> dict[str, Any]:
    splits: dict[str, Any] = {}
    for split in cfg.splits:
        clock = time.monotonic()
        cases = load_split(cfg.data, split)
        if cfg.limit is not None:
            taken: dict[str, int] = {}
            kept = []
            for c in cases:
                taken[c.kind] = taken.get(c.kind, 0) + 1
                if taken[c.kind] <= cfg.limit:
                    kept.append(c)
            cases = kept
        captured = [capture(c) for c in tqdm(cases, desc=f"capture {split}", disable=not progress)]
        entry = summarize(score(cases, captured, embedder))
        entry["conversations"] = len(cases)
        entry["duration_s"] = round(time.monotonic() - clock, 1)
        splits[split] = entry
    return {
        "config": {
            "data": str(cfg.data),
            "splits": list(cfg.splits),
            "source": cfg.source,
            "match_cosine": MATCH_COSINE,
            "limit": cfg.limit,
        },
        "headline": HEADLINE if HEADLINE in splits else None,
        "splits": splits,
        "guard": guard_report(cfg.data / GUARD_LABELS.name)
        if (cfg.data / GUARD_LABELS.name).exists()
        else None,
    }


def metrics(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Recalls and precision as rates; false captures per 100 filler turns as a rate
    that is better lower (on a 0-100 scale, so the gate's tolerance reads in points)."""
    out: list[dict[str, Any]] = []
    for split, entry in report["splits"].items():
        name = f"{SUITE}.{split}"
        for rate in ("explicit_recall", "implicit_recall", "precision", "negatives_clean"):
            cell = entry[rate]
            if cell["value"] is not None:
                out.append(
                    {
                        "name": f"{name}.{rate}",
                        "value": cell["value"],
                        "n": cell["n"],
                        "kind": "rate",
                    }
                )
        if entry["false_per_100_filler_turns"] is not None:
            out.append(
                {
                    "name": f"{name}.false_per_100_filler_turns",
                    "value": entry["false_per_100_filler_turns"],
                    "n": entry["filler_turns"],
                    "kind": "rate",
                    "better": "lower",
                }
            )
    guard = report.get("guard")
    if guard:
        for rate in ("precision", "recall", "junk_rejected"):
            cell = guard[rate]
            if cell["value"] is not None:
                out.append(
                    {
                        "name": f"{SUITE}.guard.{rate}",
                        "value": cell["value"],
                        "n": cell["n"],
                        "kind": "rate",
                    }
                )
    return out


def _cell(cell: dict[str, Any]) -> str:
    if cell["value"] is None:
        return "n/a"
    low, high = cell["ci95"]
    return f"{cell['value']:.2f} [{low:.2f}, {high:.2f}] (n={cell['n']})"


def markdown(report: dict[str, Any]) -> str:
    lines = [f"\ncapture ({report['config']['source']}, match: cosine >= {MATCH_COSINE}):"]
    lines.append(
        "| split | explicit recall | implicit recall | precision "
        "| false / 100 filler turns | negatives clean |"
    )
    lines.append("|---|---|---|---|---|---|")
    for split, e in report["splits"].items():
        lines.append(
            f"| {split} | {_cell(e['explicit_recall'])} | {_cell(e['implicit_recall'])} | "
            f"{_cell(e['precision'])} | {e['false_per_100_filler_turns']} "
            f"({e['false_filler']} in {e['filler_turns']}) | {_cell(e['negatives_clean'])} |"
        )
    guard = report.get("guard")
    if guard:
        lines.append(
            f"\ncapture guard: precision {_cell(guard['precision'])}, recall "
            f"{_cell(guard['recall'])}, junk rejected {_cell(guard['junk_rejected'])} "
            f"(SmolLM's own: {_cell(guard['smollm_junk_rejected'])})"
        )
    return "\n".join(lines)
