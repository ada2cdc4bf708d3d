"""Selection with the real all-MiniLM-L6-v2: constraints reach questions that share no
words with them, the classifier and the domains on clear cases. Marked slow (it loads
the model), small enough to run in a few seconds once loaded."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from personalization.applicability import ApplicabilityModel
from personalization.embedder import SentenceTransformerEmbedder
from service.app import create_app
from store.models import InstructionKind
from tests.conftest import Api, make_settings, wait_ready

pytestmark = pytest.mark.slow

CELIAC = "I'm celiac: even a trace of wheat flour makes me ill."
ROME = "What should I eat in Rome?"


@pytest.fixture(scope="module")
def embedder() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder()


@pytest.fixture(scope="module")
def model(embedder: SentenceTransformerEmbedder) -> ApplicabilityModel:
    return ApplicabilityModel(embedder)


@pytest.fixture
def api(
    embedder: SentenceTransformerEmbedder, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Api]:
    settings = make_settings(tmp_path_factory.mktemp("real-selection"))
    with TestClient(create_app(settings, embedder=embedder)) as client:
        wait_ready(client)
        yield Api(client)


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower())) - {"i", "m", "a", "in", "me", "what"}


def test_a_constraint_applies_to_a_domain_question_that_shares_no_words(
    api: Api, embedder: SentenceTransformerEmbedder
) -> None:
    assert not _words(CELIAC) & _words(ROME)
    vectors = embedder.embed([CELIAC, ROME])
    assert float(vectors[0] @ vectors[1]) < 0.35  # the old fixed threshold missed it
    h = api.tenant()
    api.user(h, "alice")
    celiac = api.instruction(h, "alice", text=CELIAC, source="user")
    assert celiac["kind"] == "constraint" and "food" in celiac["domains"]
    # A style preference about something else, equally far from the question by cosine,
    # stays out: the domain, not a looser threshold, lets the constraint in.
    jazz = api.instruction(h, "alice", text="Hard bop jazz records are my favourite.")
    assert jazz["kind"] == "style"
    ctx = api.context(h, "alice", ROME, whole_profile=False, threshold=0.35)
    got = {i["id"]: i for i in ctx["instructions"]}
    assert list(got) == [celiac["id"]]
    assert got[celiac["id"]]["reason"] == "constraint_domain"
    assert '"kind": "constraint"' in ctx["system_message"]["content"]


def test_the_classifier_and_domains_on_clear_cases(
    model: ApplicabilityModel, embedder: SentenceTransformerEmbedder
) -> None:
    cases = {
        "I'm severely allergic to peanuts.": (InstructionKind.constraint, "food"),
        "I use a wheelchair.": (InstructionKind.constraint, "lodging"),
        "Boutique hotels with character win over big chains for me.": (
            InstructionKind.style,
            "lodging",
        ),
        "I love mechanical keyboards.": (InstructionKind.style, "technology"),
        "Slow-burn psychological thrillers are my favourite films.": (
            InstructionKind.style,
            "screen",
        ),
    }
    vectors = embedder.embed(list(cases))
    for (text, (kind, domain)), vector in zip(cases.items(), vectors, strict=True):
        derived = model.derive(text, vector)
        assert derived.kind == kind, text
        assert domain in derived.domains, (text, derived.domains)


def test_a_turn_is_about_its_nearest_domains(
    model: ApplicabilityModel, embedder: SentenceTransformerEmbedder
) -> None:
    questions = {
        ROME: "food",
        "Which hotel in Venice would you book for a couple?": "lodging",
        "What laptop should I get for college?": "technology",
        "Suggest a workout I can do at home.": "fitness",
    }
    for (question, domain), vector in zip(
        questions.items(), embedder.embed(list(questions)), strict=True
    ):
        turn = model.turn_domains(vector)
        assert domain in turn.about, (question, sorted(turn.about))
        assert turn.centred[domain] == max(turn.centred.values())
