"""The model-free statement detector: each pattern family captures, each kind of
non-statement does not, the wording is the user's own standing instruction with their
quote, and the classifier's threshold decides when its embedder is the one it was
fitted on. Real MiniLM at the end (slow)."""

from __future__ import annotations

import numpy as np
import pytest

from personalization.embedder import MINILM_ID
from personalization.statement_detector import (
    PATTERN_ONLY_CONFIDENCE,
    QUOTE_CHARS,
    Classifier,
    DetectedStatement,
    detect_statements,
)
from tests.fakes import HashingEmbedder

FAKE = HashingEmbedder(dim=32)


def texts(*messages: str) -> list[str]:
    return [s.text for s in detect_statements(list(messages), FAKE)]


@pytest.mark.parametrize(
    ("said", "text"),
    [
        ("I'm allergic to peanuts.", "I am allergic to peanuts."),
        ("I love horror movies, the scarier the better.", "I love horror movies."),
        ("Honestly, I hate running.", "I hate running."),
        ("I prefer answers as bullet points.", "I prefer answers as bullet points."),
        ("I never rent cars abroad.", "I never rent cars abroad."),
        ("I always pick a window seat when I fly.", "I always pick a window seat when I fly."),
        ("I can't eat dairy, it makes me really sick.", "I can't eat dairy."),
        ("I don't drink alcohol at all.", "I don't drink alcohol at all."),
        ("I'm vegan, by the way, so keep that in mind.", "I am vegan."),
        (
            "We don't celebrate Christmas in my family.",
            "We don't celebrate Christmas in my family.",
        ),
        ("Classical music is my favourite.", "Classical music is my favourite."),
        ("When I work I prefer instrumental music.", "I prefer instrumental music."),
        ("I'd prefer a formal tone in your replies.", "I'd prefer a formal tone in your replies."),
    ],
)
def test_first_person_statements(said: str, text: str) -> None:
    assert texts(said) == [text]


@pytest.mark.parametrize(
    ("said", "text"),
    [
        ("Please don't use emojis.", "I don't want you to use emojis."),
        ("Always cite your sources, please.", "I want you to always cite your sources."),
        (
            "Please keep your answers short, I read them on my phone.",
            "I want you to keep your answers short.",
        ),
        ("Can you always use metric units?", "I want you to always use metric units."),
        ("Please avoid jargon, I'm not an expert.", "I want you to avoid jargon."),
    ],
)
def test_standing_requests_become_the_users_instruction(said: str, text: str) -> None:
    assert texts(said) == [text]


@pytest.mark.parametrize(
    "said",
    [
        "Do you like horror movies?",  # question
        "Are you allergic to anything?",
        "If I were vegan, what would I eat for breakfast?",  # hypothetical
        "Suppose I hated crowds, where would you send me in Paris?",
        "Hypothetically, if I stopped eating meat, would I need supplements?",
        "My friend is vegan and is coming over for dinner.",  # third person
        "My boss hates long emails.",
        "I read that Italians never drink cappuccino after noon.",  # reported speech
        "Translate this into Spanish: 'I am allergic to cats.'",
        'Someone wrote "I hate subscriptions" and got upvotes.',
        "Please summarise this email in bullet points.",  # one-off task
        "Make this paragraph shorter for me.",
        "Ha, I like the second one.",  # a reaction, not a standing taste
        "I'll check it out.",
        "What's the capital of Australia?",  # filler
    ],
)
def test_not_the_users_standing_preference(said: str) -> None:
    assert texts(said) == []


def test_mid_message_with_chatter_keeps_the_quote_and_the_message_index() -> None:
    found = detect_statements(
        [
            "What's a good plan for Saturday?",
            "Morning! Long week ahead. I'm severely allergic to shellfish though. Any ideas?",
        ],
        FAKE,
    )
    assert found == [
        DetectedStatement(
            text="I am severely allergic to shellfish.",
            quote="I'm severely allergic to shellfish though.",
            confidence=PATTERN_ONLY_CONFIDENCE,
            message_index=1,
        )
    ]


def test_a_repeated_statement_is_reported_once_and_quotes_are_bounded() -> None:
    long = "I love jazz, " + "and " * 200 + "more."
    found = detect_statements(["I love jazz.", "I love jazz.", long], FAKE)
    assert [s.text for s in found] == ["I love jazz."]
    assert all(len(s.quote) <= QUOTE_CHARS for s in detect_statements([long[:390]], FAKE))


class _Fitted(HashingEmbedder):
    """A fake with the classifier's embedder id, so its weights apply."""

    def __init__(self) -> None:
        super().__init__(dim=8, model_id=MINILM_ID)


def test_the_classifier_decides_when_its_embedder_is_used() -> None:
    embedder = _Fitted()
    vectors = embedder.embed(["I love jazz.", "I hate running."])
    # weights that score "I love jazz." high and "I hate running." low
    weights = (vectors[0] - vectors[1]).astype(np.float32) * 10
    model = Classifier(weights=weights, bias=0.0, threshold=0.5)
    found = detect_statements(["I love jazz.", "I hate running."], embedder, classifier=model)
    assert [s.text for s in found] == ["I love jazz."]
    assert 0.5 <= found[0].confidence <= 1.0
    # the same weights do not apply to another embedder: patterns alone decide
    other = detect_statements(["I love jazz.", "I hate running."], FAKE, classifier=model)
    assert [s.text for s in other] == ["I love jazz.", "I hate running."]


@pytest.mark.slow
def test_real_minilm_with_the_packaged_classifier() -> None:
    from personalization.embedder import SentenceTransformerEmbedder

    found = detect_statements(
        [
            "Hi! I'm allergic to peanuts. Can you suggest a snack?",
            "My sister is vegan.",
            "Please don't use emojis.",
            "Do you like jazz?",
            "It works now, thank you.",
        ],
        SentenceTransformerEmbedder(),
    )
    assert [(s.text, s.message_index) for s in found] == [
        ("I am allergic to peanuts.", 0),
        ("I don't want you to use emojis.", 2),
    ]
    assert all(0.0 <= s.confidence <= 1.0 for s in found)


@pytest.mark.parametrize(
    ("said", "text"),
    [
        ("I\u2019m lactose intolerant.", "I am lactose intolerant."),  # curly apostrophe
        ("no pork for me, ever, it's a religious thing.", "No pork for me, ever."),
        ("Running is just not for me.", "Running is just not for me."),
        ("shellfish allergy here. keep that in mind", "Shellfish allergy here."),
        ("looks good \u2014 no crypto for me, I don't trust it", "No crypto for me."),
        (
            "english is not my first language, please always use simple words",
            "I want you to always use simple words.",
        ),
        ("from now on don't use emojis", "I don't want you to use emojis."),
        ("I genuinely love slow films", "I genuinely love slow films."),
        (
            "I'm so done with superhero movies, they all feel the same",
            "I am so done with superhero movies.",
        ),
        ("I have two cats.", "I have two cats."),
    ],
)
def test_idioms_that_state_a_trait(said: str, text: str) -> None:
    assert texts(said) == [text]


@pytest.mark.parametrize(
    "said",
    [
        "I have a flat tyre.",  # a thing at hand, not a condition, dependant or pet
        "I have a spreadsheet with sales data.",
        "I'm kinda nervous about my interview.",  # a passing feeling
        "I love this idea, let's go with it.",  # a reaction to the thing at hand
        "The new person here is nice.",
        "I have a dentist appointment later.",
    ],
)
def test_task_context_is_not_a_preference(said: str) -> None:
    assert texts(said) == []


@pytest.mark.parametrize(
    "said",
    [
        "I've got chicken thighs, a lemon and some potatoes.",  # "I've" joined: still a possession
        "I am so happy the script finally runs.",  # a passing feeling
        "I'm in Lisbon this week for work.",
        "I prefer the shorter subject line you gave.",  # a reaction to the assistant's text
    ],
)
def test_more_task_context_is_not_a_preference(said: str) -> None:
    assert texts(said) == []


def _stage_three(fallback_threshold: float | None) -> tuple[_Fitted, Classifier]:
    """Weights that score "Carry-on only, always." (no pattern takes it) at about 0.88
    and everything else low."""
    embedder = _Fitted()
    target = embedder.embed(["Carry-on only, always."])[0]
    weights = (target / np.linalg.norm(target)).astype(np.float32) * 4
    return embedder, Classifier(
        weights=weights, bias=-2.0, threshold=0.5, fallback_threshold=fallback_threshold
    )


def test_a_sentence_no_pattern_takes_is_kept_only_when_the_classifier_is_surer() -> None:
    said = ["Carry-on only, always.", "Mostly sunny here today."]
    embedder, model = _stage_three(fallback_threshold=0.8)
    found = detect_statements(said, embedder, classifier=model)
    assert [(s.text, s.quote) for s in found] == [
        ("Carry-on only, always.", "Carry-on only, always.")
    ]
    assert found[0].confidence >= 0.8
    # above the pattern threshold but below the fallback one: not kept
    embedder, strict = _stage_three(fallback_threshold=0.95)
    assert detect_statements(said, embedder, classifier=strict) == []
    # no fallback threshold stored (older weights), or weights for another embedder: no stage 3
    embedder, none = _stage_three(fallback_threshold=None)
    assert detect_statements(said, embedder, classifier=none) == []
    assert detect_statements(said, FAKE, classifier=model) == []


@pytest.mark.parametrize(
    "said",
    [
        "Do you like jazz.",  # a question typed without its "?"
        "My dad refuses to use anything but his old flip phone.",  # a third party
        "A colleague of mine is afraid of dogs.",
        "She only reads thrillers.",
        "Keep that in mind whenever I ask about plants.",  # about the thing at hand
        "If I were vegan I would miss cheese.",  # hypothetical
        "Write me a haiku about autumn.",  # a task
    ],
)
def test_stage_three_gates(said: str) -> None:
    from personalization.statement_detector import fallback

    assert fallback(said, 0) is None


def test_stage_three_offers_the_sentence_itself() -> None:
    from personalization.statement_detector import fallback

    found = fallback("Mom of two under 5 here, so keep it quick", 3)
    assert found is not None and not found.pattern
    assert (found.text, found.message_index) == ("Mom of two under 5 here.", 3)


@pytest.mark.slow
def test_real_minilm_stage_three_takes_a_trait_no_pattern_names() -> None:
    from personalization.embedder import SentenceTransformerEmbedder

    found = detect_statements(
        ["Hate running. What cardio could I do instead?", "Sunny again today."],
        SentenceTransformerEmbedder(),
    )
    assert [s.text for s in found] == ["Hate running."]
