"""Replays selection at scale on the seen splits (dev + heldout, 480 pairs) through the
real derivation (`ApplicabilityModel.derive`, `turn_domains`) and the real selection
(`select_applicable_instructions`), with the learned weights cross-fitted: 5 folds
stratified by topic over the pooled pairs, each fold's items derived by regressions
trained on the other four. Profiles of 50 are dealt per split, as the suite deals them,
with several seeds. It measures ideas before they ship; `heldout2` is never read.

    PYTHONPATH=$PWD .venv/bin/python scripts/selection_replay.py [--dealings 3]

Needs scikit-learn (a dev dependency). Vectors are cached in /tmp (keyed by text)."""

from __future__ import annotations

import argparse
import sys
import tempfile
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from train_applicability import SEEN, Training, topic_folds  # noqa: E402

from evals.prefeval.data import PrefItem  # noqa: E402
from evals.selection_scale import DATA, deal, load_split  # noqa: E402
from personalization.applicability import (  # noqa: E402
    ApplicabilityModel,
    Derived,
    TurnDomains,
)
from personalization.candidates import similarities  # noqa: E402
from personalization.context import _cost, instruction_item  # noqa: E402
from personalization.domains import DOMAINS  # noqa: E402
from personalization.embedder import SentenceTransformerEmbedder, Vectors  # noqa: E402
from personalization.learned_applicability import LearnedApplicability  # noqa: E402
from personalization.selection import (  # noqa: E402
    SelectionPolicy,
    select_applicable_instructions,
)
from store.instructions import ROLE_TEXT, ActiveInstruction  # noqa: E402
from store.models import InstructionKind  # noqa: E402

CACHE = Path(tempfile.gettempdir()) / "tailor-selection-replay-vectors.npz"


class CachedEmbedder:
    """The packaged MiniLM behind a text-keyed cache on disk (replays re-run often)."""

    def __init__(self) -> None:
        self._inner: SentenceTransformerEmbedder | None = None
        self._vectors: dict[str, np.ndarray] = {}
        if CACHE.is_file():
            with np.load(CACHE, allow_pickle=False) as data:
                self._vectors = dict(zip(data["texts"].tolist(), data["vectors"], strict=True))
        self.model_id = "sentence-transformers/all-MiniLM-L6-v2"
        self.dim = 384

    def embed(self, texts: Sequence[str]) -> Vectors:
        missing = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        if missing:
            self._inner = self._inner or SentenceTransformerEmbedder()
            self.model_id = self._inner.model_id
            for text, vector in zip(missing, self._inner.embed(missing), strict=True):
                self._vectors[text] = vector
            np.savez(
                CACHE,
                texts=np.array(list(self._vectors)),
                vectors=np.stack(list(self._vectors.values())),
            )
        return np.stack([self._vectors[t] for t in texts]).astype(np.float32)


@dataclass(frozen=True)
class Turn:
    """One asked pair in one dealt profile: the ranked candidates (rank, is the asked
    preference, token cost), best first, as the real selection ranks them."""

    item: PrefItem
    ranked: list[tuple[float, bool, int]]


Derive = Callable[[int, LearnedApplicability | None], Derived]


def replay(
    data: Training,
    model: ApplicabilityModel,
    derived: list[Derived],
    splits: dict[str, list[int]],
    dealings: int,
    size: int = 50,
) -> list[Turn]:
    """Every turn of `dealings` seeded dealings of each split, ranked (no cap)."""
    turns_domains: dict[int, TurnDomains] = {}
    out: list[Turn] = []
    policy = SelectionPolicy(token_budget=100_000, max_items=size, floor=0.1, whole_profile=False)
    for rows in splits.values():
        for seed in range(dealings):
            for profile in deal([data.items[r] for r in rows], size, seed):
                index = {id(data.items[r]): r for r in rows}
                stored = [index[id(i)] for i in profile.stored]
                instructions = {
                    r: ActiveInstruction(
                        row_id=uuid.UUID(int=r + 1),
                        instruction_id=uuid.UUID(int=r + 1),
                        version=1,
                        text=data.items[r].preference,
                        applies_when=None,
                        always_on=False,
                        kind=derived[r].kind,
                        domains=tuple(derived[r].domains),
                    )
                    for r in stored
                }
                candidates = list(instructions.values())
                for item in profile.asked:
                    q = index[id(item)]
                    if q not in turns_domains:
                        turns_domains[q] = model.turn_domains(data.questions[q])
                    question = data.questions[q]
                    keys = {
                        instructions[r].row_id: {ROLE_TEXT: float(data.prefs[r] @ question)}
                        for r in stored
                    }
                    sims = similarities(candidates, keys, turns_domains[q])
                    chosen = select_applicable_instructions(candidates, sims, policy, cost)
                    target = instructions[q].row_id
                    ranked = [
                        (s.score, s.instruction.row_id == target, cost(s.instruction))
                        for s in chosen.selected
                    ]
                    out.append(Turn(item, ranked))
    return out


def cost(instruction: ActiveInstruction) -> int:
    """What the service charges an instruction against the budget."""
    return _cost(instruction_item(instruction))


Rule = Callable[[list[tuple[float, bool, int]]], int]  # how many of the ranked to take


def fixed(k: int) -> Rule:
    return lambda ranked: min(k, len(ranked))


def within_best(margin: float, low: int, high: int) -> Rule:
    """At least `low`, at most `high`, and past `low` only while within `margin` of the best."""

    def take(ranked: list[tuple[float, bool, int]]) -> int:
        if not ranked:
            return 0
        best = ranked[0][0]
        n = min(low, len(ranked))
        while n < min(high, len(ranked)) and ranked[n][0] >= best - margin:
            n += 1
        return n

    return take


def within_kth(margin: float, low: int, high: int) -> Rule:
    """At least `low`, then more while within `margin` of the `low`-th item's rank: a turn
    whose boundary is crowded (uncertain) takes more, a clear cut takes fewer."""

    def take(ranked: list[tuple[float, bool, int]]) -> int:
        n = min(low, len(ranked))
        if n == 0:
            return 0
        edge = ranked[n - 1][0]
        while n < min(high, len(ranked)) and ranked[n][0] >= edge - margin:
            n += 1
        return n

    return take


def score(turns: list[Turn], rule: Rule) -> dict[str, float]:
    hits = {"all": 0, "constraint": 0, "style": 0}
    counts = {"all": 0, "constraint": 0, "style": 0}
    items = tokens = 0
    for turn in turns:
        n = rule(turn.ranked)
        hit = any(t for _, t, _ in turn.ranked[:n])
        kind = turn.item.kind or "style"
        for key in ("all", kind):
            hits[key] += hit
            counts[key] += 1
        items += n
        tokens += sum(c for _, _, c in turn.ranked[:n])
    return {
        "recall": hits["all"] / counts["all"],
        "constraints": hits["constraint"] / counts["constraint"],
        "style": hits["style"] / counts["style"],
        "items": items / len(turns),
        "item_tokens": tokens / len(turns),
    }


def derive_shipped(model: ApplicabilityModel, data: Training) -> Derive:
    def derive(r: int, learned: LearnedApplicability | None) -> Derived:
        model._learned = learned  # a replay swaps the fold's weights in
        return model.derive(data.items[r].preference, data.prefs[r])

    return derive


def derive_learned_kind(model: ApplicabilityModel, data: Training) -> Derive:
    """No kind cues: the kind by regression alone; domains as shipped."""

    def derive(r: int, learned: LearnedApplicability | None) -> Derived:
        assert learned is not None
        model._learned = learned
        vector = data.prefs[r]
        constraint = learned.is_constraint(vector)
        kind = InstructionKind.constraint if constraint else InstructionKind.style
        return model.derive(data.items[r].preference, vector, kind)

    return derive


def derive_learned_only(
    model: ApplicabilityModel, data: Training, domains: int, minimum: float
) -> Derive:
    """No cues: kind by regression, a constraint's domains its nearest prototypes' and
    its `domains` most likely learned ones (each P >= minimum)."""

    def derive(r: int, learned: LearnedApplicability | None) -> Derived:
        assert learned is not None
        vector = data.prefs[r]
        model._learned = None
        constraint = learned.is_constraint(vector)
        kind = InstructionKind.constraint if constraint else InstructionKind.style
        own = model.derive(data.items[r].preference, vector, InstructionKind.style).domains
        if constraint:
            proba = learned.domain_probabilities(vector)
            order = np.argsort(-proba, kind="stable")[:domains]
            own += [DOMAINS[i] for i in order if proba[i] >= minimum and DOMAINS[i] not in own]
        return Derived(kind, own, [])

    return derive


def cross_fitted(
    data: Training, derive: Derive, train_on: set[str] | None, split_of: list[str]
) -> list[Derived]:
    """Each item derived with weights trained on the other folds (restricted to the
    `train_on` splits; None: no learned weights at all)."""
    out: list[Derived | None] = [None] * len(data.items)
    for train, test in topic_folds(data.items):
        learned = None
        if train_on is not None:
            rows = np.array([r for r in train if split_of[r] in train_on])
            learned = data.learned(rows)
        for r in test:
            out[r] = derive(int(r), learned)
    return [d for d in out if d is not None]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dealings", type=int, default=3)
    args = parser.parse_args()
    embedder = CachedEmbedder()
    items: list[PrefItem] = []
    split_of: list[str] = []
    for split in SEEN:
        found = load_split(DATA, split)
        items += found
        split_of += [split] * len(found)
    data = Training.build(embedder, items)
    model = ApplicabilityModel(embedder)
    splits = {s: [r for r in range(len(items)) if split_of[r] == s] for s in SEEN}
    seen_both = {"dev", "heldout"}
    variants: dict[str, tuple[Derive, set[str] | None]] = {
        "cues only (no learned weights)": (derive_shipped(model, data), None),
        "shipped, learned trained on dev only": (derive_shipped(model, data), {"dev"}),
        "shipped, learned trained on dev + heldout": (derive_shipped(model, data), seen_both),
        "learned kind only (no kind cues)": (derive_learned_kind(model, data), seen_both),
        "learned only (3 domains, P >= 0.05)": (
            derive_learned_only(model, data, 3, 0.05),
            seen_both,
        ),
        "learned only (4 domains, P >= 0.03)": (
            derive_learned_only(model, data, 4, 0.03),
            seen_both,
        ),
    }
    rules: dict[str, Rule] = {f"top {k}": fixed(k) for k in (9, 10, 12, 14)}
    for margin, low, high in ((0.2, 8, 16), (0.25, 6, 16), (0.25, 8, 16)):
        rules[f"within {margin} of best, {low}-{high}"] = within_best(margin, low, high)
    for margin, low, high in ((0.04, 7, 16), (0.06, 6, 16), (0.08, 6, 16)):
        rules[f"within {margin} of the {low}th, max {high}"] = within_kth(margin, low, high)
    of_split = {s: {id(items[r]) for r in rows} for s, rows in splits.items()}
    for name, (derive, train_on) in variants.items():
        derived = cross_fitted(data, derive, train_on, split_of)
        turns = replay(data, model, derived, splits, args.dealings)
        print(f"\n## {name}")
        print("rule | recall / constraints / style (items, item tokens) | dev | heldout")
        for rule_name, rule in rules.items():
            parts = [score(turns, rule)] + [
                score([t for t in turns if id(t.item) in of_split[s]], rule) for s in SEEN
            ]
            cells = [
                f"{p['recall']:.3f} / {p['constraints']:.3f} / {p['style']:.3f}" for p in parts
            ]
            cells[0] += f" ({parts[0]['items']:.2f}, {parts[0]['item_tokens']:.0f})"
            print(f"{rule_name} | " + " | ".join(cells), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
