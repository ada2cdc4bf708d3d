"""The report's hygiene: arms keep one distinguishable colour in every chart and its
legend, a missing judge reads `none`, and junk the tailor arm stored is flagged."""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest

from evals.charts import W, line_chart, stacked_bars
from evals.junk import junk_reason
from evals.prefeval.arms import ALL_ARMS
from evals.prefeval.data import load_items
from evals.report import render
from evals.stats import proportion


def _colours(svg: str) -> tuple[dict[str, str], dict[str, str]]:
    """series -> stroke, and legend name -> fill, as drawn."""
    series = {
        name: colour
        for colour, name in re.findall(
            r'stroke="(#[0-9a-f]{6})" stroke-width="2" data-series="([^"]+)"', svg
        )
    }
    legend = {
        name: colour
        for colour, name in re.findall(
            r'fill="(#[0-9a-f]{6})" font-size="12" '
            r'data-legend="([^"]+)"',
            svg,
        )
    }
    return series, legend


def _rgb(colour: str) -> tuple[int, ...]:
    return tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))


def _points(names: tuple[str, ...]) -> dict[str, list[tuple[float | None, float, float]]]:
    return {n: [(0.5, 0.4, 0.6), (0.6, 0.5, 0.7)] for n in names}


def test_arms_keep_one_distinct_colour_everywhere() -> None:
    arms = tuple(ALL_ARMS)
    assert len(arms) == 5
    series, legend = _colours(line_chart("all", ["0", "10"], _points(arms)))
    assert set(series) == set(arms) and legend == series  # the legend says what is drawn
    assert len(set(series.values())) == len(arms)
    for a, b in itertools.combinations(series.values(), 2):
        distance = sum((x - y) ** 2 for x, y in zip(_rgb(a), _rgb(b), strict=True)) ** 0.5
        assert distance > 70, (a, b)  # not two shades of one blue
    # A chart with fewer arms draws each in the same colour as the full one.
    some, _ = _colours(line_chart("some", ["0", "10"], _points(("tailor", "rag"))))
    assert some == {"tailor": series["tailor"], "rag": series["rag"]}
    # Other series (CIPHER's methods) never borrow a colour an arm shows with.
    methods, _ = _colours(line_chart("m", ["1", "2"], _points(("no-learning", "CIPHER-5"))))
    assert not set(methods.values()) & set(series.values())


def test_legends_stay_on_the_canvas() -> None:
    names = ("inconsistent_violation", "unaware_violation", "hallucination", "followed", "x")
    svg = stacked_bars("kinds", {"tailor": dict.fromkeys(names, 1)}, names)
    xs = [float(x) for x in re.findall(r'<text x="([0-9.]+)"[^>]*data-legend', svg)]
    assert len(xs) == len(names)
    for x, name in zip(xs, names, strict=True):
        assert x + 7 * len(name) + 14 <= W, name
    svg = line_chart("all", ["0"], _points(tuple(ALL_ARMS)))
    assert all(float(x) < W - 50 for x in re.findall(r'<text x="([0-9.]+)"[^>]*data-leg', svg))


def _results(judge: str | None, stored: list[str]) -> dict[str, Any]:
    cell = {**proportion(1, 2), "truncated": 0, "preference_dropped": 0, "filler_repeated": 0}
    cell.update(profile_used=1, parse_failures=0)
    report = {
        "config": {"turns": [0], "model": "m", "items": 2, "context_window": 4096, "judge": judge},
        "chance": 0.25,
        "tasks": {"mcq": {arm: {"0": cell} for arm in ("zero-shot", "tailor")}},
        "by_form": {},
        "judge_agreement": None,
        "tailor_profiles": [
            {"item": f"choice/t/{n}", "instruction": text, "error": None}
            for n, text in enumerate(stored)
        ],
    }
    return {
        "started_at": "2026-12-03T00:00:00",
        "duration_s": 1.0,
        "service": "in-process",
        "suite": "prefeval",
        "suites": {"prefeval": report},
        "comparison": None,
    }


def test_missing_judge_reads_none() -> None:
    html = render(_results(None, ["I like tea."]))
    assert "judge <code>none</code>" in html and "<code>None</code>" not in html
    assert "judge <code>big-judge</code>" in render(_results("big-judge", ["I like tea."]))


def test_junk_the_tailor_arm_stored_is_flagged() -> None:
    stored = [
        "I avoid gluten because I have celiac disease.",
        "You're a helpful AI assistant named SmolLM, trained by Hugging Face.",
        "I'm sorry, but I cannot determine the user's preference from this conversation.",
    ]
    html = render(_results("j", stored))
    assert "2 of 3 stored items look like junk" in html
    rows = re.findall(r"<tr><td>choice/t/\d</td>.*?</tr>", html)
    assert rows[0].endswith("<td></td><td></td></tr>")  # no error, no flag
    assert rows[1].endswith("<td>assistant self-description</td></tr>")
    assert rows[2].endswith("<td>refusal or apology</td></tr>")
    clean = render(_results("j", stored[:1]))
    assert "No stored item of 1 looks like junk" in clean


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        (None, "empty"),
        ("I like " + "very " * 60 + "short answers.", "overlong"),
        ("You're a helpful AI assistant named SmolLM.", "assistant self-description"),
        ("As an AI, I don't have personal preferences.", "assistant self-description"),
        ("I am an AI language model and cannot have tastes.", "assistant self-description"),
        ("I'm sorry, but I can't help with that.", "refusal or apology"),
        ("I apologize for the confusion.", "refusal or apology"),
        ("I cannot determine a preference from this conversation.", "refusal or apology"),
        ("Sure! Here is the preference you asked for.", "chatter"),
        ("Here's a summary: the conversation was about knees.", "chatter"),
        ("The conversation is about running shoes.", "not first person"),
        ("Prefers low-impact workouts.", "not first person"),
    ],
)
def test_junk_reasons(text: str | None, reason: str) -> None:
    assert junk_reason(text) == reason


@pytest.mark.parametrize(
    "text",
    [
        "I cannot eat gluten because I have celiac disease.",
        "I can't stand horror movies.",
        "My budget for a laptop is under $800.",
        "I'm a chatbot developer, so skip the basics.",
        "We travel with a toddler, so keep plans short.",
    ],
)
def test_real_preferences_are_not_junk(text: str) -> None:
    assert junk_reason(text) is None


def test_no_shipped_preference_is_junk() -> None:
    flagged = [
        (i.key, junk_reason(i.preference)) for i in load_items() if junk_reason(i.preference)
    ]
    assert flagged == []
