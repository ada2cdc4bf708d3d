"""The OpenAI-compatible chat endpoint, driven by the official `openai` client over the
in-process app (a TestClient is an httpx.Client). The model is a recording fake here;
tests/test_embedded_model.py runs the real one."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from tests.conftest import Api
from tests.fakes import RecordingBackend


@pytest.fixture
def setup(start_app: Any) -> tuple[Api, dict[str, str], RecordingBackend, dict[str, Any]]:
    backend = RecordingBackend()
    api = start_app(backend=backend)
    h = api.tenant()
    api.user(h, "alice")
    always = api.instruction(h, "alice", text="I avoid gluten", always_on=True)
    api.instruction(h, "alice", text="Use bullet points", applies_when="travel plan itinerary")
    return api, h, backend, always


def client_for(api: Api, headers: dict[str, str]) -> openai.OpenAI:
    key = headers["Authorization"].removeprefix("Bearer ")
    return openai.OpenAI(
        base_url="http://testserver/v1", api_key=key, http_client=api.client, max_retries=0
    )


def test_openai_client_non_streaming(setup: Any) -> None:
    api, h, backend, always = setup
    client = client_for(api, h)
    raw = client.chat.completions.with_raw_response.create(
        model="anything",
        user="alice",
        messages=[
            {"role": "system", "content": "You are a travel agent."},
            {"role": "user", "content": "Make a travel plan for Rome"},
        ],
        max_tokens=50,
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == backend.answer
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "test/recording"
    assert completion.usage is not None
    assert (
        completion.usage.total_tokens
        == completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    extra = completion.model_extra or {}
    items = extra["tailor"]["profile_items"]
    assert [i["reason"] for i in items] == ["always_on", "matched_condition"]
    assert items[0]["id"] == always["id"]
    assert raw.headers["x-tailor-profile-items"].split(",") == [i["id"] for i in items]

    sent = backend.received[-1]
    assert [m.role for m in sent] == ["system", "system", "user"]
    assert sent[0].content == "You are a travel agent."  # the app's prompt stays first
    assert "<<<USER_PROFILE" in sent[1].content
    assert '"text": "I avoid gluten"' in sent[1].content
    assert sent[2].content == "Make a travel plan for Rome"


def test_openai_client_streaming(setup: Any) -> None:
    api, h, backend, _ = setup
    stream = client_for(api, h).chat.completions.create(
        model="x",
        user="alice",
        stream=True,
        messages=[{"role": "user", "content": "hello"}],
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == backend.answer
    assert chunks[0].choices[0].delta.role == "assistant"
    assert (chunks[0].model_extra or {})["tailor"]["profile_items"][0]["reason"] == "always_on"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert len({c.id for c in chunks}) == 1
    # the profile went in first, since the app sent no system prompt
    assert backend.received[-1][0].role == "system"
    assert "<<<USER_PROFILE" in backend.received[-1][0].content


def test_raw_sse_format(setup: Any) -> None:
    api, h, _, _ = setup
    with api.client.stream(
        "POST",
        "/v1/chat/completions",
        json={"user": "alice", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
        headers=h,
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    assert all(line.startswith("data: ") for line in lines)
    assert json.loads(lines[0][6:])["object"] == "chat.completion.chunk"


def test_user_bound_key_needs_no_user_field_and_cannot_name_another(setup: Any) -> None:
    api, h, _, _ = setup
    api.user(h, "bob")
    key = api.client.post("/v1/keys", json={"user_id": "alice"}, headers=h).json()["key"]
    bound = {"Authorization": f"Bearer {key}"}
    client = client_for(api, bound)
    done = client.chat.completions.create(model="x", messages=[{"role": "user", "content": "hi"}])
    assert (done.model_extra or {})["tailor"]["user_id"] == "alice"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(
            model="x", user="bob", messages=[{"role": "user", "content": "hi"}]
        )


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, 422, "user_required"),
        (
            {"user": "nobody", "messages": [{"role": "user", "content": "hi"}]},
            404,
            "user_not_found",
        ),
        ({"user": "alice", "messages": []}, 422, "invalid_request"),
        (
            {"user": "alice", "n": 2, "messages": [{"role": "user", "content": "hi"}]},
            422,
            "invalid_request",
        ),
        (
            {"user": "alice", "not_openai": 1, "messages": [{"role": "user", "content": "hi"}]},
            422,
            "invalid_request",
        ),
        (
            {
                "user": "alice",
                "max_tokens": 4000,
                "messages": [{"role": "user", "content": "x" * 30000}],
            },
            422,
            "context_too_long",
        ),
    ],
)
def test_chat_bad_input(setup: Any, body: dict[str, Any], status: int, code: str) -> None:
    api, h, backend, _ = setup
    response = api.client.post("/v1/chat/completions", json=body, headers=h)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert backend.received == []


class Failing(RecordingBackend):
    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def complete(self, messages: Any, settings: Any) -> Any:
        raise self.error

    def stream(self, messages: Any, settings: Any) -> Any:
        raise self.error
        yield  # pragma: no cover


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        ("unavailable", 503, "backend_unavailable"),
        ("failed", 502, "backend_error"),
        ("busy", 429, "model_busy"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_backend_failures_are_clean_errors(
    start_app: Any, error: str, status: int, code: str, stream: bool
) -> None:
    from personalization.backends import BackendBusy, BackendFailed, BackendUnavailable

    exc = {"unavailable": BackendUnavailable, "failed": BackendFailed, "busy": BackendBusy}[error]
    api = start_app(backend=Failing(exc("model down")))
    h = api.tenant()
    api.user(h, "alice")
    response = api.client.post(
        "/v1/chat/completions",
        json={"user": "alice", "stream": stream, "messages": [{"role": "user", "content": "hi"}]},
        headers=h,
    )
    assert response.status_code == status
    assert response.json()["error"] == {"code": code, "message": "model down"}
    if status in (429, 503):
        assert response.headers["retry-after"] == "2"
