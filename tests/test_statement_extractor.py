"""The LLM extraction path: strict parsing of the model's JSON, quotes that must be the
user's words, the guard on every text, and the wiring over a real socket to an
OpenAI-compatible server (scripted)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from personalization.backends import BackendUnavailable
from personalization.backends.openai_compatible import OpenAICompatibleBackend
from personalization.messages import ChatMessage
from personalization.statement_detector import DetectedStatement
from personalization.statement_extractor import (
    SYSTEM,
    extract_statements,
    parse_statements,
    render_conversation,
)
from tests.scripted_server import Scripted, ScriptedServer

CHOICE = [
    ChatMessage("user", "I'm planning a dinner party. What main course would you suggest?"),
    ChatMessage("assistant", "1) Shrimp scampi 2) Lemon roast chicken. I love shrimp myself."),
    ChatMessage("user", "I'll take the roast chicken. Shellfish and I do not get along."),
]
USER = [m.content for m in CHOICE if m.role == "user"]


def answer(*rows: dict[str, object]) -> str:
    return json.dumps({"preferences": list(rows)})


def test_a_well_formed_answer_becomes_statements_with_the_users_message_index() -> None:
    found = parse_statements(
        answer(
            {
                "text": "I avoid shellfish.",
                "quote": "Shellfish and I do not get along.",
                "confidence": 0.85,
            }
        ),
        USER,
    )
    assert found == [
        DetectedStatement(
            text="I avoid shellfish.",
            quote="Shellfish and I do not get along.",
            confidence=0.85,
            message_index=1,
        )
    ]


@pytest.mark.parametrize(
    "row",
    [
        # the assistant's words, not the user's
        {"text": "I love shrimp.", "quote": "I love shrimp myself."},
        # a quote the user never wrote
        {"text": "I am vegetarian.", "quote": "I am vegetarian."},
        # junk the guard rejects
        {
            "text": "You're a helpful AI assistant named SmolLM.",
            "quote": "I'll take the roast chicken.",
        },
        {
            "text": "I'd be happy to help with your dinner party!",
            "quote": "I'll take the roast chicken.",
        },
        {"text": "The user avoids shellfish.", "quote": "Shellfish and I do not get along."},
        # the wrong shape
        {"text": 3, "quote": "I'll take the roast chicken."},
        {"quote": "I'll take the roast chicken."},
        "I avoid shellfish.",
    ],
)
def test_rows_that_are_not_the_users_preference_are_dropped(row: object) -> None:
    assert parse_statements(json.dumps({"preferences": [row]}), USER) == []


@pytest.mark.parametrize(
    "raw",
    [
        "Sure! The user avoids shellfish.",
        "",
        '{"preferences": "I avoid shellfish."}',
        '["I avoid shellfish."]',
        '{"preferences": [{"text": "I avoid shellfish.", "quote": "Shellfish and I',
    ],
)
def test_anything_but_the_documented_json_yields_nothing(raw: str) -> None:
    assert parse_statements(raw, USER) == []


def test_fenced_json_duplicates_and_odd_confidences() -> None:
    row = {"text": "I avoid shellfish.", "quote": "shellfish and I do NOT get along"}
    raw = "```json\n" + answer(row, row, {**row, "text": "I avoid  shellfish.", "confidence": 7})
    found = parse_statements(raw + "\n```", USER)
    assert [(s.text, s.confidence, s.message_index) for s in found] == [
        ("I avoid shellfish.", 0.7, 1)
    ]
    capped = parse_statements(answer({**row, "confidence": 7}), USER)
    assert capped[0].confidence == 1.0


def test_the_conversation_marks_assistant_turns_as_context() -> None:
    rendered = render_conversation(CHOICE)
    assert rendered.startswith("[user message 1]\nI'm planning")
    assert "[assistant, context only]\n1) Shrimp scampi" in rendered
    assert "[user message 2]\nI'll take the roast chicken." in rendered


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as running:
        yield running


def _backend(server: ScriptedServer) -> OpenAICompatibleBackend:
    return OpenAICompatibleBackend(
        server.base_url, "served-model", api_key="sk-test", backoff_s=0.01, max_retries=1
    )


def test_extraction_over_an_openai_compatible_server(server: ScriptedServer) -> None:
    server.script = [
        Scripted(
            text=answer(
                {
                    "text": "I avoid shellfish.",
                    "quote": "Shellfish and I do not get along.",
                    "confidence": 0.9,
                },
                {"text": "As an AI, I love shrimp.", "quote": "I love shrimp myself."},
            )
        )
    ]
    found = extract_statements(CHOICE, _backend(server))
    assert [(s.text, s.message_index, s.confidence) for s in found] == [
        ("I avoid shellfish.", 1, 0.9)
    ]
    sent = server.requests[0]
    assert sent["model"] == "served-model" and sent["temperature"] == 0.0
    assert sent["messages"][0] == {"role": "system", "content": SYSTEM}
    assert sent["messages"][1]["content"] == render_conversation(CHOICE)


def test_plain_user_messages_are_accepted_too(server: ScriptedServer) -> None:
    server.script = [
        Scripted(text=answer({"text": "I am vegan.", "quote": "I'm vegan, by the way."}))
    ]
    found = extract_statements(["Hi!", "I'm vegan, by the way."], _backend(server))
    assert [(s.text, s.message_index) for s in found] == [("I am vegan.", 1)]
    assert "[user message 2]\nI'm vegan" in server.requests[0]["messages"][1]["content"]


def test_a_failing_backend_is_an_error_for_the_job_to_retry(server: ScriptedServer) -> None:
    server.script = [Scripted(status=503), Scripted(status=503), Scripted(status=503)]
    with pytest.raises(BackendUnavailable):
        extract_statements(CHOICE, _backend(server))


def test_no_user_message_means_no_call(server: ScriptedServer) -> None:
    assert extract_statements([ChatMessage("assistant", "I love jazz.")], _backend(server)) == []
    assert server.requests == []
