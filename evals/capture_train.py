"""Fits the statement detector's classifier on the capture set's seen splits and writes
personalization/statement_classifier.json (weights, bias, thresholds):

    python -m evals.capture_train                  # fit on TRAIN_SPLITS
    python -m evals.capture_train --leave-one-out  # the honest estimate; writes nothing

Positives: in each explicit conversation, the user sentence closest to the gold
preference (any sentence, not only a pattern's: stage 3 of the detector scores
sentences no pattern takes). Negatives: every other user sentence of the splits
(chit-chat around a statement, negatives, filler). The classifier sees the MiniLM
vector of the sentence as the user wrote it. The pattern threshold is the highest that
keeps TARGET_RECALL of the positives a pattern takes, on 5-fold out-of-fold scores (capped at 0.5).

FALLBACK_THRESHOLD (stage 3) was chosen leaving one split out at a time (each split is
one author's): trained on the other four, the lowest of 0.8 / 0.7 / 0.65 / 0.6 / 0.55 /
0.5 at which every left-out split kept at most 1 false capture per 100 filler turns and
at least 0.9 of its negative conversations clean. Figures: README "Capture quality"."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from evals.capture_data import CAPTURE_DATA, load_split
from evals.capture_eval import score, summarize
from personalization.embedder import Embedder, SentenceTransformerEmbedder
from personalization.statement_detector import (
    CLASSIFIER_PATH,
    candidate,
    classifier_from,
    detect_statements,
    split_sentences,
    strip_lead,
)

TARGET_RECALL = 0.95
# Every split: each held-out split was scored once blind, then became training data
# (README "Capture quality"); the honest estimate is leave-one-split-out.
TRAIN_SPLITS = ("dev", "heldout", "heldout2", "heldout3", "heldout4")
FALLBACK_THRESHOLD = 0.8
C = 1.0


def training_set(
    embedder: Embedder, splits: Sequence[str] = TRAIN_SPLITS, root: Path = CAPTURE_DATA
) -> tuple[list[str], list[int], list[bool]]:
    """(sentence, positive or not, whether a pattern takes it) for every user sentence."""
    texts: list[str] = []
    labels: list[int] = []
    patterned: list[bool] = []
    for case in (c for split in splits for c in load_split(root, split)):
        if case.kind in ("choice", "persona"):
            continue  # implicit: not the detector's job, and not a clean negative either
        said = [
            (sentence, index)
            for index, message in enumerate(case.user_messages)
            for sentence in split_sentences(message)
            if strip_lead(sentence)
        ]
        bodies = [strip_lead(sentence) for sentence, _ in said]
        for sentence, index in said:
            found = candidate(sentence, index)
            patterned.append(found is not None and bool(found.text))
        positive = None
        if case.gold is not None and bodies:
            vectors = embedder.embed([case.gold, *bodies])
            positive = int(np.argmax(vectors[1:] @ vectors[0]))
        texts += bodies
        labels += [int(i == positive) for i in range(len(bodies))]
    return texts, labels, patterned


def fit(embedder: Embedder, splits: Sequence[str] = TRAIN_SPLITS) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]
    from sklearn.model_selection import cross_val_predict  # type: ignore[import-untyped]

    texts, labels, patterned = training_set(embedder, splits)
    vectors = embedder.embed(texts)
    y = np.asarray(labels)
    model = LogisticRegression(C=C, class_weight="balanced", max_iter=2000)
    # out-of-fold scores: a threshold read off the training fit would be too sure
    scores = cross_val_predict(model, vectors, y, cv=5, method="predict_proba")[:, 1]
    # the pattern threshold from the positives a pattern takes (stage 3 has its own)
    positives = np.sort(scores[(y == 1) & np.asarray(patterned)])
    threshold = float(positives[int(np.floor((1 - TARGET_RECALL) * len(positives)))])
    model.fit(vectors, y)
    return {
        "about": "logistic regression over all-MiniLM-L6-v2 vectors; evals/capture_train.py",
        "trained_on": [f"evals/data/capture/{split}" for split in splits],
        "embedder": embedder.model_id,
        "positives": int(y.sum()),
        "negatives": int(len(y) - y.sum()),
        "threshold": round(min(threshold, 0.5), 4),
        "fallback_threshold": FALLBACK_THRESHOLD,
        "bias": float(model.intercept_[0]),
        "weights": [round(float(w), 6) for w in model.coef_[0]],
    }


def leave_one_out(embedder: Embedder, splits: Sequence[str] = TRAIN_SPLITS) -> list[str]:
    """Each split scored by a detector fitted on the others (each split is one author's),
    with stage 3 at FALLBACK_THRESHOLD and without it: table rows."""
    rows = []
    for left in splits:
        fitted = classifier_from(fit(embedder, [s for s in splits if s != left]))
        cases = load_split(CAPTURE_DATA, left)
        cells = []
        for fallback in (FALLBACK_THRESHOLD, None):
            model = replace(fitted, fallback_threshold=fallback)
            captured = [
                [d.text for d in detect_statements(c.user_messages, embedder, classifier=model)]
                for c in cases
            ]
            found = summarize(score(cases, captured, embedder))
            cells.append(
                f"{found['explicit_recall']['value']:.2f} / "
                f"{found['false_per_100_filler_turns']} / {found['negatives_clean']['value']:.2f}"
            )
        rows.append(f"| {left} | {fitted.threshold:.3f} | {cells[0]} | {cells[1]} |")
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    embedder = SentenceTransformerEmbedder()
    if args == ["--leave-one-out"]:
        print(
            "| left out | pattern threshold | recall / false per 100 filler turns / negatives"
            f" clean, stage 3 at {FALLBACK_THRESHOLD} | same, no stage 3 |\n|---|---|---|---|"
        )
        print("\n".join(leave_one_out(embedder)))
        return 0
    if args:
        print("usage: python -m evals.capture_train [--leave-one-out]", file=sys.stderr)
        return 2
    found = fit(embedder)
    CLASSIFIER_PATH.write_text(json.dumps(found) + "\n", encoding="utf-8")
    print(
        f"wrote {CLASSIFIER_PATH}: {found['positives']} positives, "
        f"{found['negatives']} negatives, threshold {found['threshold']}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
