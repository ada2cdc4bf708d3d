"""PrefEval pieces on their own: the file format reader (on the shipped set and on
broken copies), option shuffling, window fitting, answer parsing, retrieval, the
judge's error types and agreement, statistics and the regression gate."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from evals.compare import compare
from evals.prefeval.arms import (
    REMINDER,
    Retriever,
    final_message,
    fit_window,
    mcq_prompt,
    message_tokens,
    parse_choice,
    rag_prompt,
)
from evals.prefeval.data import (
    SHIPPED,
    DatasetError,
    filler_turns,
    load_filler,
    load_items,
    shuffled_options,
    topics,
)
from evals.prefeval.judge import Verdict, agreement, cohen_kappa, load_labelled, parse_yes_no
from evals.stats import proportion, wilson
from personalization.messages import ChatMessage
from tests.fakes import HashingEmbedder


def test_shipped_set_is_in_prefevals_layout() -> None:
    items = load_items()
    assert topics(SHIPPED) == [
        "education_learning_styles",
        "lifestyle_fit",
        "shop_technology",
        "travel_restaurant",
    ]
    forms = [i.form for i in items]
    assert (forms.count("explicit"), forms.count("choice"), forms.count("persona")) == (12, 8, 4)
    assert all(i.options is not None and len(i.options) == 4 for i in items)
    choice = next(i for i in items if i.form == "choice")
    assert [m.role for m in choice.conversation] == ["user", "assistant", "user", "assistant"]
    assert choice.preference not in " ".join(m.content for m in choice.conversation)
    explicit = next(i for i in items if i.form == "explicit")
    assert explicit.conversation[0].content == explicit.preference
    assert len({i.key for i in items}) == len(items)
    assert len(load_filler()) == 45


def test_options_shuffle_is_seeded_and_tracks_the_correct_one() -> None:
    item = load_items()[0]
    assert item.options is not None
    first, again = shuffled_options(item, seed=0), shuffled_options(item, seed=0)
    assert first == again
    options, correct = first
    assert options[correct] == item.options[0]
    assert sorted(options) == sorted(item.options)
    positions = {shuffled_options(i, 0)[1] for i in load_items()}
    assert len(positions) > 1  # the right answer is not always in one place


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(SHIPPED, root)
    return root


def test_broken_files_name_the_file_and_the_problem(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    target = root / "mcq_options" / "lifestyle_fit.json"
    entries = json.loads(target.read_text())
    entries[1]["classification_task_options"] = ["only", "three", "options"]
    target.write_text(json.dumps(entries))
    with pytest.raises(DatasetError, match=r"lifestyle_fit.json\[1\].*4 strings"):
        load_items(root)

    root = _copy(tmp_path / "b")
    (root / "explicit_preference" / "shop_technology.json").write_text("{not json")
    with pytest.raises(DatasetError, match=r"shop_technology\.json: not readable JSON"):
        load_items(root)

    root = _copy(tmp_path / "c")
    path = root / "implicit_preference" / "persona-driven" / "lifestyle_fit.json"
    entries = json.loads(path.read_text())
    del entries[0]["conversation"]["0"]["assistant"]
    path.write_text(json.dumps(entries))
    with pytest.raises(DatasetError, match="`assistant` must be a non-empty string"):
        load_items(root)

    with pytest.raises(DatasetError, match="not PrefEval's layout"):
        load_items(tmp_path)


def test_optional_parts_may_be_absent(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    shutil.rmtree(root / "implicit_preference")
    (root / "mcq_options" / "lifestyle_fit.json").unlink()
    items = load_items(root)
    assert {i.form for i in items} == {"explicit"}
    assert [i.options is None for i in items].count(True) == 3


def _write(path: Path, entries: list[dict[str, object]]) -> None:
    path.write_text(json.dumps(entries), encoding="utf-8")


def test_options_belong_to_a_position_not_a_question(tmp_path: Path) -> None:
    """PrefEval repeats a question within a topic with other options: each entry keeps
    its own (mcq entry i is explicit entry i's), whatever its twin has."""
    root = _copy(tmp_path)
    topic = "lifestyle_fit"
    explicit_path = root / "explicit_preference" / f"{topic}.json"
    mcq_path = root / "mcq_options" / f"{topic}.json"
    explicit, mcq = json.loads(explicit_path.read_text()), json.loads(mcq_path.read_text())
    twin = explicit[0]["question"]
    persona_path = root / "implicit_preference" / "persona-driven" / f"{topic}.json"
    persona_entries = json.loads(persona_path.read_text())
    assert persona_entries[0]["question"] == explicit[2]["question"]
    explicit[2]["question"] = mcq[2]["question"] = persona_entries[0]["question"] = twin
    _write(explicit_path, explicit)
    _write(mcq_path, mcq)
    _write(persona_path, persona_entries)
    first, third = mcq[0]["classification_task_options"], mcq[2]["classification_task_options"]
    assert first != third

    items = {i.key: i for i in load_items(root)}
    assert items[f"explicit/{topic}/0"].question == items[f"explicit/{topic}/2"].question
    assert items[f"explicit/{topic}/0"].options == tuple(first)
    assert items[f"explicit/{topic}/2"].options == tuple(third)
    # Our shipped implicit files are subsets: matched on preference and question.
    persona = items[f"persona/{topic}/0"]
    assert persona.preference == explicit[2]["preference"] and persona.options == tuple(third)
    assert items[f"choice/{topic}/0"].options == tuple(first)

    # PrefEval's own implicit files are parallel to the explicit one: entry i is entry i.
    choice_path = root / "implicit_preference" / "choice-based" / f"{topic}.json"
    choice = json.loads(choice_path.read_text())
    parallel = [choice[0], choice[1], {**choice[1], **{"question": twin}}]
    parallel[2]["preference"] = "I said it in another way."
    _write(choice_path, parallel)
    items = {i.key: i for i in load_items(root)}
    assert items[f"choice/{topic}/2"].options == tuple(third)
    assert items[f"choice/{topic}/0"].options == tuple(first)


def test_misaligned_options_and_kinds_are_named(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    mcq_path = root / "mcq_options" / "shop_technology.json"
    mcq = json.loads(mcq_path.read_text())
    _write(mcq_path, [mcq[1], mcq[0], mcq[2]])
    with pytest.raises(DatasetError, match=r"shop_technology\.json\[0\]: question differs"):
        load_items(root)
    _write(mcq_path, mcq[:2])
    with pytest.raises(DatasetError, match="2 entries for 3 explicit ones"):
        load_items(root)
    _write(mcq_path, mcq)

    path = root / "explicit_preference" / "shop_technology.json"
    entries = json.loads(path.read_text())
    entries[0]["kind"], entries[1]["kind"] = "constraint", "style"
    _write(path, entries)
    kinds = [i.kind for i in load_items(root, forms=("explicit",)) if i.topic == "shop_technology"]
    assert kinds == ["constraint", "style", None]
    entries[2]["kind"] = "hard rule"
    _write(path, entries)
    with pytest.raises(DatasetError, match=r"shop_technology\.json\[2\]: `kind` must be one of"):
        load_items(root)


def test_filler_repeats_only_past_the_pool() -> None:
    pool = load_filler()
    ten, repeated = filler_turns(pool, 10)
    assert len(ten) == 20 and not repeated
    assert [m.role for m in ten[:4]] == ["user", "assistant", "user", "assistant"]
    many, repeated = filler_turns(pool, 70)
    assert len(many) == 140 and repeated
    assert many[90] == many[0]


def test_parse_choice() -> None:
    options = ["Cycling and swimming", "Running", "Jumping", "Sprints"]
    assert parse_choice("B", options) == 1
    assert parse_choice(" (C) Jumping", options) == 2
    assert parse_choice("The answer is D.", options) == 3
    assert parse_choice("I'd go with cycling and swimming", options) == 0
    assert parse_choice("I cannot choose", options) is None
    assert parse_choice("", options) is None
    prompt = mcq_prompt("Which?", options)
    assert "A. Cycling and swimming\nB. Running" in prompt


def test_fit_window_cuts_oldest_whole_turns_and_says_so() -> None:
    pref = [ChatMessage("user", "I avoid gluten."), ChatMessage("assistant", "Noted.")]
    filler = [ChatMessage("user" if i % 2 == 0 else "assistant", "x" * 400) for i in range(20)]
    whole = fit_window(pref, filler, "Question?", 10_000)
    assert whole.dropped == 0 and whole.preference_kept
    assert whole.messages[-1] == ChatMessage("user", "Question?")
    cut = fit_window(pref, filler, "Question?", 1000)
    assert cut.dropped > 0 and cut.dropped % 2 == 0 and not cut.preference_kept
    assert message_tokens(cut.messages) <= 1000
    assert cut.messages[0].role == "user"
    assert cut.messages[:-1] == [*pref, *filler][cut.dropped :]


def test_arm_messages() -> None:
    history = [
        ChatMessage("user", "I never eat shellfish because of an allergy."),
        ChatMessage("assistant", "Noted."),
        ChatMessage("user", "Why is the sky blue?"),
        ChatMessage("assistant", "Scattering of sunlight."),
    ]
    retriever = Retriever(HashingEmbedder(dim=4096))  # wide enough to avoid collisions
    top = retriever.top("Which shellfish dinner?", history, k=1)
    assert top == ["User: I never eat shellfish because of an allergy."]
    assert final_message("reminder", "Q?", "Q?", history, None) == "Q?" + REMINDER
    assert final_message("zero-shot", "Q?", "Q?", history, None) == "Q?"
    assert final_message("tailor", "Q?", "Q?", history, None) == "Q?"
    rag = final_message("rag", "Q? Options...", "Which shellfish dinner?", history, retriever)
    assert rag.endswith("Now, please answer my question: Q? Options...")
    assert "User: I never eat shellfish" in rag
    assert rag_prompt("Q", ["a", "b"]).count("\n") >= 2


@pytest.mark.parametrize(
    ("v", "a", "h", "helpful", "expected"),
    [
        (False, False, False, True, "followed"),
        (False, True, False, True, "followed"),
        (True, False, False, True, "unaware_violation"),
        (True, True, False, True, "inconsistent_violation"),
        (False, True, True, True, "hallucination"),
        (True, True, True, True, "hallucination"),
        (False, False, False, False, "unhelpful"),
        (None, False, False, True, "judge_unparsed"),
        (False, True, None, True, "judge_unparsed"),
        (False, False, None, True, "followed"),  # no acknowledgement: hallucination moot
    ],
)
def test_error_types(v, a, h, helpful, expected) -> None:
    assert Verdict(v, a, h, helpful).error_type == expected


def test_yes_no_and_kappa() -> None:
    assert parse_yes_no("Yes, it does.") is True
    assert parse_yes_no(" no") is False
    assert parse_yes_no("Maybe") is None
    assert cohen_kappa([(True, True), (False, False)]) == 1.0
    assert cohen_kappa([(True, False), (False, True)]) == -1.0
    assert cohen_kappa([(True, True), (True, True)]) is None


def test_agreement_against_the_hand_labels() -> None:
    labelled = load_labelled()
    assert len(labelled) == 16
    kinds = {Verdict(**i["labels"]).error_type for i in labelled}
    assert kinds >= {
        "followed",
        "unaware_violation",
        "hallucination",
        "inconsistent_violation",
        "unhelpful",
    }
    perfect = agreement([dict(i["labels"]) for i in labelled], labelled)
    assert perfect["violation"]["agreement"] == 1.0 and perfect["violation"]["kappa"] == 1.0
    assert perfect["error_type"]["agreement"] == 1.0
    always_yes = [
        dict.fromkeys(("violation", "acknowledgement", "hallucination", "helpful"), True)
        for _ in labelled
    ]
    found = agreement(always_yes, labelled)
    violations = sum(i["labels"]["violation"] for i in labelled)
    assert found["violation"]["agreement"] == round(violations / 16, 4)
    assert found["violation"]["kappa"] == 0.0
    unparsed = agreement(
        [
            dict.fromkeys(("violation", "acknowledgement", "hallucination", "helpful"))
            for _ in labelled
        ],
        labelled,
    )
    assert unparsed["helpful"] == {"n": 16, "agreement": 0.0, "kappa": None, "unparsed": 16}


def test_wilson_interval() -> None:
    low, high = wilson(12, 24)
    assert low == pytest.approx(0.314, abs=0.001) and high == pytest.approx(0.686, abs=0.001)
    assert wilson(0, 0) == (0.0, 1.0)
    assert proportion(24, 24)["ci95"][1] == 1.0 and proportion(24, 24)["ci95"][0] < 1.0


def test_regression_gate() -> None:
    old = [
        {"name": "a", "value": 0.80, "n": 24, "kind": "rate"},
        {"name": "b", "value": 0.50, "n": 24, "kind": "rate"},
        {"name": "c", "value": 0.20, "n": 15, "kind": "cost"},
        {"name": "gone", "value": 0.1, "n": 1, "kind": "rate"},
    ]
    new = [
        {"name": "a", "value": 0.70, "n": 24, "kind": "rate"},  # -0.10: regression
        {"name": "b", "value": 0.46, "n": 24, "kind": "rate"},  # -0.04: within 0.05
        {"name": "c", "value": 0.25, "n": 15, "kind": "cost"},  # +25%: regression
        {"name": "new", "value": 0.3, "n": 1, "kind": "rate"},
    ]
    found = compare(new, old, tolerance=0.05, cost_tolerance=0.10)
    assert [r["name"] for r in found["regressions"]] == ["a", "c"]
    assert found["regressions"][0]["delta"] == -0.1
    assert found["missing"] == ["gone"] and found["compared"] == 3
    better = compare(old[:3], new[:3])
    assert [r["name"] for r in better["improvements"]] == ["a", "c"]
    assert compare(new, new)["regressions"] == []
