"""Word-level edit distance, CIPHER's measure of how much a user changed a draft.

rapidfuzz's Levenshtein runs in C, bit-parallel, on any sequences of hashables, so on
word lists it gives the same integer as the textbook dynamic programme (tests keep
that programme as the reference) about 400 times faster: a 2000-by-2000-word edit
takes about 6 ms instead of 2.4 s of pure Python holding the GIL. That makes the
exact distance affordable for every edit the API accepts (16,000 characters a side,
about 20 ms at worst), so no approximation is needed for long ones."""

from __future__ import annotations

from rapidfuzz.distance import Levenshtein


def word_levenshtein(a: list[str], b: list[str]) -> int:
    """Insertions, deletions and substitutions of whole words."""
    return int(Levenshtein.distance(a, b))


def edit_distance(draft: str, edited: str) -> int:
    return word_levenshtein(draft.split(), edited.split())


def normalized_edit_distance(draft: str, edited: str) -> float:
    """0 for identical texts, 1 for nothing in common: word edits over the longer text."""
    a, b = draft.split(), edited.split()
    if not a and not b:
        return 0.0
    return word_levenshtein(a, b) / max(len(a), len(b))
