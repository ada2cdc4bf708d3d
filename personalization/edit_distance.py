"""Word-level edit distance, CIPHER's measure of how much a user changed a draft."""

from __future__ import annotations

import difflib

_EXACT_LIMIT = 4_000_000  # cells of the DP table; past it, an approximation is used


def word_levenshtein(a: list[str], b: list[str]) -> int:
    """Insertions, deletions and substitutions of whole words, O(len(a)·len(b)) time."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, word_a in enumerate(a, 1):
        current = [i]
        for j, word_b in enumerate(b, 1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (word_a != word_b))
            )
        previous = current
    return previous[-1]


def edit_distance(draft: str, edited: str) -> int:
    return word_levenshtein(draft.split(), edited.split())


def normalized_edit_distance(draft: str, edited: str) -> float:
    """0 for identical texts, 1 for nothing in common. Exact for ordinary drafts; for
    very long ones (over 2000 by 2000 words) difflib's ratio stands in, to bound CPU."""
    a, b = draft.split(), edited.split()
    if not a and not b:
        return 0.0
    if len(a) * len(b) > _EXACT_LIMIT:
        return 1.0 - difflib.SequenceMatcher(a=a, b=b, autojunk=False).ratio()
    return word_levenshtein(a, b) / max(len(a), len(b))
