"""selection-at-scale: does the preference a question depends on reach the model when
the user holds 1, 10 or 50 preferences?

The data is PrefEval's explicit layout, one folder per split (`dev/`, `heldout/`,
`heldout2/`), each
item a (preference, question) pair with a gold `kind` (constraint or style). Per split
and profile size, the pairs are shuffled with the seed (topics mix) and dealt into
profiles of that size; one user per profile stores each preference as a standing
instruction exactly as a user states it (`{"text": preference}`), then asks each of its
questions as the last user message of POST /context with default settings. A turn is
a hit when the asked-about preference's instruction is among the selected ones.

Remainder: when the pairs do not divide evenly, the last profile is topped up with the
first pairs of the shuffled order, stored but not asked again, so every profile holds
exactly `size` preferences and every pair is asked once per size (a split smaller than
`size` makes one profile of all its pairs, reported as its real size).

Splits: `dev` and `heldout` are seen (tuned on, and the learned classifiers' training
data; `heldout` was looked at once it had been reported); `heldout2` is the blind split,
the figure that counts (HEADLINE), evaluated once per choice and never tuned on. Misses
are listed for the seen splits only."""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tqdm import tqdm

from evals.prefeval.data import KINDS, DatasetError, PrefItem, load_items
from evals.prefeval.runner import PrefEvalConfig, pick_items
from evals.stats import proportion

DATA = Path(__file__).resolve().parent / "data" / "selection_scale"
SPLITS = ("dev", "heldout", "heldout2")
SEEN = ("dev", "heldout")  # tuned on and trained on; reported under their names as seen
SIZES = (1, 10, 50)
HEADLINE = "heldout2"  # blind: the figure that counts
SUITE = "selection_at_scale"  # the prefix of its figures


class ScaleClient(Protocol):
    """What the suite needs of evals.client.TailorClient."""

    def fresh_user(self, user_id: str) -> None: ...
    def delete_user(self, user_id: str) -> None: ...
    def add_instruction(self, user_id: str, text: str, **extra: Any) -> str: ...
    def context(self, user_id: str, text: str, **options: Any) -> dict[str, Any]: ...


@dataclass(frozen=True)
class ScaleConfig:
    data: Path = DATA
    splits: tuple[str, ...] = SPLITS
    sizes: tuple[int, ...] = SIZES
    seed: int = 0
    limit: int | None = None  # N pairs per split: a seeded sample, topics in turn


@dataclass(frozen=True, slots=True)
class Profile:
    asked: tuple[PrefItem, ...]
    padding: tuple[PrefItem, ...] = ()  # stored, not asked (the remainder's top-up)

    @property
    def stored(self) -> tuple[PrefItem, ...]:
        return (*self.asked, *self.padding)


@dataclass(frozen=True, slots=True)
class Turn:
    item: PrefItem
    hit: bool
    selected: int  # instructions in the context
    tokens: int  # the response's token_estimate
    empty: bool  # no system_message at all


def load_split(root: Path, split: str, limit: int | None = None, seed: int = 0) -> list[PrefItem]:
    """A split's pairs; with a limit, a seeded sample taking the topics in turn (files
    often list one kind first, so the first N would not be a fair sample)."""
    folder = root / split
    if not folder.is_dir():
        raise DatasetError(f"{folder}: missing (selection-at-scale reads {split}/ under {root})")
    items = load_items(folder, forms=("explicit",))
    if limit is not None:
        random.Random(f"{seed}:limit").shuffle(items)  # noqa: S311 (reproducible sample)
        items = pick_items(items, PrefEvalConfig(forms=("explicit",), limit=limit))
    return items


def deal(items: Sequence[PrefItem], size: int, seed: int) -> list[Profile]:
    """The pairs in a seeded order, cut into profiles of `size` (see the module doc)."""
    order = list(items)
    if not order:
        return []
    random.Random(seed).shuffle(order)  # noqa: S311 (a reproducible deal, not a secret)
    size = min(size, len(order))
    profiles = [Profile(tuple(order[i : i + size])) for i in range(0, len(order), size)]
    short = size - len(profiles[-1].asked) if profiles else 0
    if short:
        profiles[-1] = Profile(profiles[-1].asked, tuple(order[:short]))
    return profiles


def _user(split: str, size: int, n: int) -> str:
    return f"tailor-eval-scale-{split}-{size}-{n}"


def ask_profile(client: ScaleClient, user: str, profile: Profile) -> list[Turn]:
    """One user holding the profile, one /context per asked pair; the user is removed."""
    client.fresh_user(user)
    try:
        ids: dict[str, str] = {}  # one instruction per distinct text, as a user states it
        for item in profile.stored:
            if item.preference not in ids:
                ids[item.preference] = client.add_instruction(user, item.preference)
        turns = []
        for item in profile.asked:
            found = client.context(user, item.question)
            chosen = [str(i["id"]) for i in found["instructions"]]
            turns.append(
                Turn(
                    item=item,
                    hit=ids[item.preference] in chosen,
                    selected=len(chosen),
                    tokens=int(found["token_estimate"]),
                    empty=found.get("system_message") is None,
                )
            )
        return turns
    finally:
        client.delete_user(user)


def summarize(turns: Sequence[Turn], profiles: Sequence[Profile]) -> dict[str, Any]:
    n = len(turns)
    by_kind = {k: [t for t in turns if t.item.kind == k] for k in KINDS}
    by_topic: dict[str, list[Turn]] = defaultdict(list)
    for t in turns:
        by_topic[t.item.topic].append(t)
    return {
        "turns": n,
        "profiles": len(profiles),
        "profile_size": max((len({i.preference for i in p.stored}) for p in profiles), default=0),
        "padding": sum(len(p.padding) for p in profiles),
        "recall": proportion(sum(t.hit for t in turns), n),
        **{
            f"{k}_recall": proportion(sum(t.hit for t in rows), len(rows))
            for k, rows in by_kind.items()
        },
        "items_per_turn": round(sum(t.selected for t in turns) / n, 3) if n else None,
        "tokens_per_turn": round(sum(t.tokens for t in turns) / n, 1) if n else None,
        "empty_rate": proportion(sum(t.empty for t in turns), n),
        "by_topic": {
            topic: proportion(sum(t.hit for t in rows), len(rows))
            for topic, rows in sorted(by_topic.items())
        },
    }


def run(client: ScaleClient, cfg: ScaleConfig, progress: bool = True) -> dict[str, Any]:
    splits: dict[str, Any] = {}
    for split in cfg.splits:
        items = load_split(cfg.data, split, cfg.limit, cfg.seed)
        sizes: dict[str, Any] = {}
        for size in cfg.sizes:
            clock = time.monotonic()
            profiles = deal(items, size, cfg.seed)
            turns: list[Turn] = []
            bar = tqdm(
                total=len(items), desc=f"selection-at-scale {split} x{size}", disable=not progress
            )
            with bar:
                for n, profile in enumerate(profiles):
                    turns += ask_profile(client, _user(split, size, n), profile)
                    bar.update(len(profile.asked))
            entry = summarize(turns, profiles)
            entry["duration_s"] = round(time.monotonic() - clock, 1)
            if split != HEADLINE and size == max(cfg.sizes):
                entry["misses"] = [
                    {"key": t.item.key, "kind": t.item.kind, "question": t.item.question}
                    for t in turns
                    if not t.hit
                ]
            sizes[str(size)] = entry
        splits[split] = {"pairs": len(items), "sizes": sizes}
    return {
        "config": {
            "data": str(cfg.data),
            "splits": list(cfg.splits),
            "sizes": list(cfg.sizes),
            "seed": cfg.seed,
            "limit": cfg.limit,
        },
        "headline": HEADLINE if HEADLINE in splits else None,
        "splits": splits,
    }


def metrics(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Recall figures and the empty rate as rates (the empty rate lower-is-better),
    items and tokens per turn as costs."""
    out: list[dict[str, Any]] = []
    for split, found in report["splits"].items():
        for size, entry in found["sizes"].items():
            name = f"{SUITE}.{split}.size={size}"
            for rate in ("recall", "constraint_recall", "style_recall", "empty_rate"):
                cell = entry[rate]
                if cell["value"] is None:
                    continue
                metric = {"name": f"{name}.{rate}", "value": cell["value"], "n": cell["n"]}
                metric["kind"] = "rate"
                if rate == "empty_rate":
                    metric["better"] = "lower"
                out.append(metric)
            for cost in ("items_per_turn", "tokens_per_turn"):
                if entry[cost] is not None:
                    out.append(
                        {
                            "name": f"{name}.{cost}",
                            "value": entry[cost],
                            "n": entry["turns"],
                            "kind": "cost",
                        }
                    )
    return out


def _cell(entry: dict[str, Any]) -> str:
    if entry["value"] is None:
        return "-"
    low, high = entry["ci95"]
    return f"{entry['value']:.3f} [{low:.2f}, {high:.2f}]"


HEADER = (
    "profile size",
    "recall [95% CI]",
    "constraints",
    "style",
    "items/turn",
    "tokens/turn",
    "empty",
    "turns",
)


def rows(found: dict[str, Any]) -> list[list[str]]:
    """One split's table, a row per profile size."""
    return [
        [
            size,
            _cell(e["recall"]),
            _cell(e["constraint_recall"]),
            _cell(e["style_recall"]),
            "-" if e["items_per_turn"] is None else f"{e['items_per_turn']:.2f}",
            "-" if e["tokens_per_turn"] is None else f"{e['tokens_per_turn']:.0f}",
            "-" if e["empty_rate"]["value"] is None else f"{e['empty_rate']['value']:.3f}",
            str(e["turns"]),
        ]
        for size, e in found["sizes"].items()
    ]


def ordered(report: dict[str, Any]) -> list[str]:
    """The splits, the headline (held-out) first."""
    return sorted(report["splits"], key=lambda s: (s != report.get("headline"), s))


def markdown(report: dict[str, Any]) -> str:
    lines = []
    for split in ordered(report):
        note = " (the figure that counts)" if split == report.get("headline") else " (seen)"
        lines.append(f"\nselection at scale, {split}{note}:")
        lines.append("| " + " | ".join(HEADER) + " |")
        lines.append("|---" * len(HEADER) + "|")
        lines += ["| " + " | ".join(r) + " |" for r in rows(report["splits"][split])]
    return "\n".join(lines)
