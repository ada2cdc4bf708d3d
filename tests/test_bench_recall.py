"""recall@k as bench/mem0_compare.py scores both systems with it."""

from __future__ import annotations

import pytest

from bench.mem0_compare import make_data, recall_at_k

SCORES = {"a": 0.9, "b": 0.8, "c": 0.7, "d": 0.6, "e": 0.5, "f": 0.4, "g": 0.3}


def test_exact_top_k_is_full_recall_in_any_order() -> None:
    assert recall_at_k(["e", "a", "d", "c", "b"], SCORES, 5) == 1.0


def test_a_global_top_k_filtered_by_user_is_partial() -> None:
    # what a search returns when it keeps only the user's rows of a global top k
    assert recall_at_k(["a"], SCORES, 5) == pytest.approx(0.2)
    assert recall_at_k([], SCORES, 5) == 0.0


def test_items_below_the_kth_score_and_unknown_items_do_not_count() -> None:
    assert recall_at_k(["a", "b", "f", "g", "zzz"], SCORES, 5) == pytest.approx(0.4)


def test_duplicates_count_once() -> None:
    assert recall_at_k(["a", "a", "a"], SCORES, 3) == pytest.approx(1 / 3)


def test_a_tie_at_the_kth_score_accepts_either_item() -> None:
    tied = {"a": 0.9, "b": 0.5, "c": 0.5 + 5e-5, "d": 0.1}
    assert recall_at_k(["a", "b"], tied, 2) == 1.0
    assert recall_at_k(["a", "c"], tied, 2) == 1.0
    assert recall_at_k(["a", "d"], tied, 2) == 0.5


def test_fewer_items_than_k_need_only_those() -> None:
    assert recall_at_k(["b", "a"], {"a": 0.2, "b": 0.1}, 5) == 1.0
    assert recall_at_k(["a"], {"a": 0.2, "b": 0.1}, 5) == 0.5


def test_data_sets_hold_the_same_texts_per_user_or_distinct_mixes() -> None:
    shared = make_data("shared", 3, 20)
    assert shared["user-0"] == shared["user-1"] == shared["user-2"]
    distinct = make_data("distinct", 3, 20)
    assert distinct["user-0"] != distinct["user-1"]
    assert all(len(set(texts)) == 20 for texts in distinct.values())
    assert distinct == make_data("distinct", 3, 20)  # seeded: both sides get the same
