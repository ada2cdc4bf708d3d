"""The model-free part of capture, with fakes: which statements repeat, contradict or
add to the profile; the guard; the minimal detector; what counts as evidence."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from personalization.capture import (
    DUPLICATE_COSINE,
    KnownItem,
    contradicts,
    plan_capture,
    polarity,
    text_key,
)
from personalization.messages import ChatMessage
from personalization.statement_detector import DetectedStatement
from personalization.suggestions import this_turn, user_evidence
from tests.fakes import HashingEmbedder

EMBED = HashingEmbedder()


def said(*texts: str) -> list[DetectedStatement]:
    return [DetectedStatement(t, t, 0.9, i) for i, t in enumerate(texts)]


def known(kind: str, text: str, embedded: bool = True) -> KnownItem:
    vector = EMBED.embed([text])[0] if embedded else None
    return KnownItem(kind, uuid.uuid4(), text, vector)  # type: ignore[arg-type]


def plan(statements: list[DetectedStatement], items: list[KnownItem]) -> object:
    return plan_capture(statements, EMBED.embed([s.text for s in statements]), items)


def test_a_repeat_reinforces_the_item_whatever_its_case_and_punctuation() -> None:
    instruction = known("instruction", "I'm allergic to peanuts.")
    rejected = known("suggestion", "I love jazz.")
    result = plan_capture(
        said("i am ALLERGIC to peanuts!", "I love jazz"),
        EMBED.embed(["i am ALLERGIC to peanuts!", "I love jazz"]),
        [instruction, rejected],
    )
    assert result.proposals == []
    assert [(r.kind, r.id) for r in result.reinforcements] == [
        ("instruction", instruction.id),
        ("suggestion", rejected.id),
    ]


def test_a_close_paraphrase_repeats_by_embedding_but_not_across_polarity() -> None:
    item = known("instruction", "I prefer short answers please")
    close = "please I prefer short answers"  # same words: cosine 1 under the fake
    assert float(np.dot(EMBED.embed([close])[0], item.vector)) >= DUPLICATE_COSINE  # type: ignore[arg-type]
    assert [
        r.id for r in plan_capture(said(close), EMBED.embed([close]), [item]).reinforcements
    ] == [item.id]
    flipped = "I hate spicy food"
    liked = known("suggestion", "I love spicy food")
    result = plan_capture(said(flipped), EMBED.embed([flipped]), [liked])
    assert result.reinforcements == []
    assert [p.action for p in result.proposals] == ["new"]


def test_an_item_embedded_by_another_model_is_compared_by_text_only() -> None:
    other = known("suggestion", "I prefer short answers please", embedded=False)
    result = plan_capture(
        said("please I prefer short answers"),
        EMBED.embed(["please I prefer short answers"]),
        [other],
    )
    assert result.reinforcements == []
    assert len(result.proposals) == 1


def test_a_contradiction_of_an_active_instruction_proposes_to_supersede_it() -> None:
    vegetarian = known("instruction", "I'm vegetarian.")
    spicy = known("instruction", "I love spicy food.")
    result = plan_capture(
        said("I eat fish again now.", "I hate spicy food.", "I like jazz."),
        EMBED.embed(["I eat fish again now.", "I hate spicy food.", "I like jazz."]),
        [vegetarian, spicy],
    )
    assert [(p.action, p.target_instruction_id) for p in result.proposals] == [
        ("supersede", vegetarian.id),
        ("supersede", spicy.id),
        ("new", None),
    ]
    # a pending suggestion is never superseded: only instructions are
    pending = known("suggestion", "I'm vegetarian.")
    result = plan_capture(said("I eat fish again now."), EMBED.embed(["x"]), [pending])
    assert [(p.action, p.target_instruction_id) for p in result.proposals] == [("new", None)]


@pytest.mark.parametrize(
    ("statement", "instruction", "expected"),
    [
        ("I eat fish again now.", "I'm vegetarian.", True),
        ("I'm vegan now.", "I love cheese on everything.", True),
        ("I don't eat fish.", "I'm vegetarian.", False),  # agrees with it
        ("I'm no longer allergic to peanuts.", "I'm allergic to peanuts.", True),
        ("I never want bullet points in answers.", "I always want bullet points.", True),
        ("Please use emojis.", "Please don't use emojis.", True),
        ("I love Thai food.", "I hate spicy food.", False),  # another subject
        ("I prefer tea.", "I prefer coffee.", False),  # a documented limit: a replacement
        ("I'm allergic to peanuts.", "I'm allergic to peanuts.", False),
    ],
)
def test_the_contradiction_rule(statement: str, instruction: str, expected: bool) -> None:
    assert contradicts(statement, instruction) is expected


def test_polarity_and_text_key() -> None:
    assert polarity("I'm allergic to peanuts") == -1
    assert polarity("I'm no longer allergic to peanuts") == 1
    assert polarity("I don't like it") == -1
    assert text_key("I\u2019m  ALLERGIC to peanuts!") == text_key("i am allergic to peanuts")
    assert text_key("Don't.") == "do not"


def test_a_statement_said_twice_in_one_conversation_is_proposed_once() -> None:
    result = plan(said("Please don't use emojis.", "please don't use emojis"), [])
    assert len(result.proposals) == 1  # type: ignore[attr-defined]


def test_only_the_users_words_are_evidence() -> None:
    messages = [
        ChatMessage("system", "I'm vegan."),
        ChatMessage("user", "I like jazz."),
        ChatMessage("assistant", "I prefer rock."),
        ChatMessage("tool", "I'm allergic to cats."),
        ChatMessage("user", "  "),
        ChatMessage("user", "Any concerts?"),
    ]
    assert user_evidence(messages) == ["I like jazz.", "Any concerts?"]
    assert this_turn(messages) == messages[3:]
    assert user_evidence(this_turn(messages)) == ["Any concerts?"]


@pytest.mark.slow
def test_with_minilm_a_rewording_repeats_and_a_different_taste_does_not() -> None:
    from personalization.embedder import SentenceTransformerEmbedder

    minilm = SentenceTransformerEmbedder()
    items = [
        KnownItem("instruction", uuid.uuid4(), t, minilm.embed([t])[0])
        for t in ("I'm vegetarian.", "I prefer tea.", "I love spicy food.")
    ]
    texts = ["I am a vegetarian.", "I prefer coffee.", "I hate spicy food."]
    result = plan_capture(said(*texts), minilm.embed(texts), items)
    assert [r.id for r in result.reinforcements] == [items[0].id]
    assert [(p.statement.text, p.action, p.target_instruction_id) for p in result.proposals] == [
        ("I prefer coffee.", "new", None),
        ("I hate spicy food.", "supersede", items[2].id),
    ]
