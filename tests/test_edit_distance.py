"""rapidfuzz's word Levenshtein agrees exactly with the textbook dynamic programme,
kept here as the reference (it was the implementation before)."""

from __future__ import annotations

import random

import pytest

from personalization.edit_distance import (
    edit_distance,
    normalized_edit_distance,
    word_levenshtein,
)


def reference_levenshtein(a: list[str], b: list[str]) -> int:
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


@pytest.mark.parametrize("seed", range(20))
def test_agrees_with_the_reference_on_random_word_lists(seed: int) -> None:
    rng = random.Random(seed)
    vocabulary = [f"w{i}" for i in range(rng.choice([2, 5, 30, 500]))]
    for _ in range(25):
        a = [rng.choice(vocabulary) for _ in range(rng.randrange(0, 90))]
        b = list(a) if rng.random() < 0.5 else [rng.choice(vocabulary) for _ in range(60)]
        for _ in range(rng.randrange(0, 10)):  # a few edits of a shared text
            if b and rng.random() < 0.5:
                b.pop(rng.randrange(len(b)))
            else:
                b.insert(rng.randrange(len(b) + 1), rng.choice(vocabulary))
        assert word_levenshtein(a, b) == reference_levenshtein(a, b)


def test_words_not_characters_are_the_unit() -> None:
    # one word substituted, one inserted; a character-level distance would be larger
    assert edit_distance("the cat sat", "the dog sat down") == 2
    assert word_levenshtein(["abc"], ["abd"]) == 1
    assert normalized_edit_distance("a b c d", "a b c d") == 0.0
    assert normalized_edit_distance("", "") == 0.0
    assert normalized_edit_distance("", "new words") == 1.0
    assert normalized_edit_distance("one two three four", "one two three five") == 0.25


def test_long_edits_are_exact_too() -> None:
    """Past 2000 by 2000 words the old code switched to difflib's ratio; now exact."""
    rng = random.Random(3)
    vocabulary = [f"w{i}" for i in range(300)]
    a = [rng.choice(vocabulary) for _ in range(2500)]
    b = a[:1200] + [rng.choice(vocabulary) for _ in range(100)] + a[1300:]
    expected = reference_levenshtein(a, b)
    assert normalized_edit_distance(" ".join(a), " ".join(b)) == expected / 2500
