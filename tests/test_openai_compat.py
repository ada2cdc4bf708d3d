"""OpenAI compatibility an app can rely on: the official `openai` client, pointed at a
real Tailor server (uvicorn in a thread) whose backend is a scripted OpenAI-compatible
upstream on another real socket. Every field the app sends arrives upstream unchanged
next to the profile block; tool calls, logprobs, finish reasons and usage come back
unchanged. (A protocol test: it runs on SQLite; the storage paths have their own.)"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from service.app import create_app
from tests.conftest import ADMIN_TOKEN, make_settings
from tests.fakes import HashingEmbedder
from tests.scripted_server import Scripted, ScriptedServer
from tests.server_process import InThreadServer

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"default": None}},
            "required": ["city"],
        },
        "strict": True,
    },
}


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedServer]:
    with ScriptedServer() as server:
        yield server


@pytest.fixture(scope="module")
def tailor(upstream: ScriptedServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    settings = make_settings(
        Path(tmp_path_factory.mktemp("compat")),
        model_backend="openai",
        model_base_url=upstream.base_url,
        model_name="served-model",
        model_max_retries=0,
        rate_limit_per_minute=0,
        turns_keep_message=True,
    )
    server = InThreadServer(create_app(settings, embedder=HashingEmbedder()))
    base = server.start(timeout=60)
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    made = httpx.post(f"{base}/v1/tenants", json={"name": "acme"}, headers=admin)
    key = made.json()["api_key"]["key"]
    h = {"Authorization": f"Bearer {key}"}
    httpx.post(f"{base}/v1/users", json={"id": "alice"}, headers=h).raise_for_status()
    httpx.post(
        f"{base}/v1/users/alice/instructions",
        json={"text": "I avoid gluten", "always_on": True},
        headers=h,
    ).raise_for_status()
    client = openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)
    yield {"base": base, "headers": h, "client": client}
    server.stop()


@pytest.fixture(autouse=True)
def fresh(upstream: ScriptedServer) -> None:
    upstream.requests.clear()
    upstream.script.clear()


def _profile_is_second(sent: list[dict[str, Any]]) -> None:
    assert sent[1]["role"] == "system"
    assert "<<<USER_PROFILE" in sent[1]["content"]
    assert "I avoid gluten" in sent[1]["content"]


FORWARDED: dict[str, Any] = {
    "tools": [WEATHER_TOOL],
    "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    "parallel_tool_calls": False,
    "response_format": {
        "type": "json_schema",
        "json_schema": {
            "name": "answer",
            "schema": {"type": "object", "properties": {"a": {"type": "integer"}}},
            "strict": True,
        },
    },
    "seed": 1234,
    "stop": ["END", "STOP"],
    "logprobs": True,
    "top_logprobs": 3,
    "max_completion_tokens": 77,
    "metadata": {"feature": "trip-planner"},
    "store": False,
    "presence_penalty": 0.5,
    "frequency_penalty": -0.25,
    "logit_bias": {"50256": -100},
    "service_tier": "default",
    "reasoning_effort": "low",
    "prompt_cache_key": "trip-v1",
    "safety_identifier": "hashed-user",
    "temperature": 0.3,
    "top_p": 0.9,
}


@pytest.mark.parametrize("stream", [False, True])
def test_every_forwarded_field_arrives_unchanged(
    tailor: Any, upstream: ScriptedServer, stream: bool
) -> None:
    messages = [
        {"role": "system", "content": "You are a travel agent."},
        {"role": "user", "content": "Weather in Rome?", "name": "alice_w"},
    ]
    extra: dict[str, Any] = {"stream_options": {"include_usage": True}} if stream else {}
    answer = tailor["client"].chat.completions.create(
        model="gpt-anything", user="alice", messages=messages, stream=stream, **FORWARDED, **extra
    )
    if stream:
        list(answer)
    sent = upstream.requests[-1]
    for name, value in {**FORWARDED, **extra}.items():
        assert sent[name] == value, name
    assert sent["model"] == "served-model"  # the backend decides
    assert "user" not in sent  # the end user's id in this app stays in Tailor
    assert "max_tokens" not in sent  # max_completion_tokens is not rewritten
    assert sent["stream"] is stream
    assert [sent["messages"][0], *sent["messages"][2:]] == messages
    _profile_is_second(sent["messages"])


def test_stop_string_and_max_tokens_forwarded_as_sent(
    tailor: Any, upstream: ScriptedServer
) -> None:
    tailor["client"].chat.completions.create(
        model="m",
        user="alice",
        messages=[{"role": "user", "content": "hi"}],
        stop="END",
        max_tokens=12,
        stream_options=None,
    )
    sent = upstream.requests[-1]
    assert (sent["stop"], sent["max_tokens"]) == ("END", 12)
    assert "stream_options" not in sent and "tools" not in sent
    _profile_is_second([{"role": "x"}, *sent["messages"]])  # no app system prompt: first


TOOL_CALLS = [
    {
        "id": "call_a",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
    },
    {
        "id": "call_b",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
    },
]
LOGPROBS = {
    "content": [{"token": "x", "logprob": -0.5, "bytes": [120], "top_logprobs": []}],
    "refusal": None,
}
USAGE = {
    "prompt_tokens": 40,
    "completion_tokens": 9,
    "total_tokens": 49,
    "prompt_tokens_details": {"cached_tokens": 32},
    "completion_tokens_details": {"reasoning_tokens": 0},
}


def test_tool_calls_come_back_intact(tailor: Any, upstream: ScriptedServer) -> None:
    upstream.script = [
        Scripted(
            message={
                "role": "assistant",
                "content": None,
                "tool_calls": TOOL_CALLS,
                "refusal": None,
            },
            finish_reason="tool_calls",
            logprobs=LOGPROBS,
            usage=USAGE,
        )
    ]
    done = tailor["client"].chat.completions.create(
        model="m",
        user="alice",
        messages=[{"role": "user", "content": "Weather in Rome and Oslo?"}],
        tools=[WEATHER_TOOL],
    )
    choice = done.choices[0]
    assert choice.message.content is None
    assert [c.model_dump() for c in choice.message.tool_calls or []] == TOOL_CALLS
    assert choice.finish_reason == "tool_calls"
    assert choice.logprobs is not None and choice.logprobs.model_dump() == LOGPROBS
    assert done.usage is not None and done.usage.model_dump(exclude_none=True) == USAGE
    assert (done.model_extra or {})["tailor"]["user_id"] == "alice"


# One call's name in the first piece, its arguments split over three; a second call after.
STREAMED = [
    {"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                     "function": {"name": "get_weather", "arguments": ""}}]},
    {"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]},
    {"tool_calls": [{"index": 0, "function": {"arguments": 'ty": "Ro'}}]},
    {"tool_calls": [{"index": 0, "function": {"arguments": 'me"}'}}]},
    {"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                     "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]},
]  # fmt: skip


def _assembled(chunks: list[Any]) -> list[dict[str, Any]]:
    calls: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            for piece in choice.delta.tool_calls or []:
                call = calls.setdefault(
                    piece.index, {"id": "", "type": "", "function": {"name": "", "arguments": ""}}
                )
                call["id"] += piece.id or ""
                call["type"] += piece.type or ""
                if piece.function is not None:
                    call["function"]["name"] += piece.function.name or ""
                    call["function"]["arguments"] += piece.function.arguments or ""
    return [calls[i] for i in sorted(calls)]


@pytest.mark.parametrize("include_usage", [True, False])
def test_streamed_tool_calls_and_usage(
    tailor: Any, upstream: ScriptedServer, include_usage: bool
) -> None:
    upstream.script = [Scripted(deltas=STREAMED, finish_reason="tool_calls", usage=USAGE)]
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    chunks = list(
        tailor["client"].chat.completions.create(
            model="m",
            user="alice",
            messages=[{"role": "user", "content": "Weather in Rome and Oslo?"}],
            tools=[WEATHER_TOOL],
            stream=True,
            **options,
        )
    )
    assert _assembled(chunks) == TOOL_CALLS
    # each upstream piece is one chunk, in order and unchanged
    pieces = [
        c.choices[0].delta.model_dump(exclude_none=True)
        for c in chunks
        if c.choices and c.choices[0].delta.tool_calls
    ]
    assert [p["tool_calls"] for p in pieces] == [d["tool_calls"] for d in STREAMED]
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "tool_calls"
    if include_usage:
        assert chunks[-1].choices == []
        assert chunks[-1].usage is not None
        assert chunks[-1].usage.model_dump(exclude_none=True) == USAGE
    else:
        assert all(c.choices for c in chunks)
        assert all(c.usage is None for c in chunks)


def test_usage_is_estimated_when_the_upstream_reports_none(
    tailor: Any, upstream: ScriptedServer
) -> None:
    """A server that ignores stream_options still gives the app a usage chunk."""
    upstream.script = [Scripted(text="one two three")]
    with httpx.stream(
        "POST",
        f"{tailor['base']}/v1/chat/completions",
        json={"user": "alice", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
        headers=tailor["headers"],
    ) as response:
        lines = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    assert all("usage" not in json.loads(line) for line in lines[:-1])  # not asked for

    body = {
        "user": "alice",
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "hi"}],
    }
    upstream.script = [Scripted(text="one two three", usage={})]
    with httpx.stream(
        "POST",
        f"{tailor['base']}/v1/chat/completions",
        json=body,
        headers=tailor["headers"],
    ) as response:
        lines = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    last = json.loads(lines[-2])
    assert last["choices"] == []
    usage = last["usage"]
    assert usage["completion_tokens"] > 0 and usage["prompt_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_json_mode(tailor: Any, upstream: ScriptedServer) -> None:
    upstream.script = [Scripted(text='{"city": "Rome", "days": 3}')]
    done = tailor["client"].chat.completions.create(
        model="m",
        user="alice",
        messages=[{"role": "user", "content": "Plan Rome as JSON"}],
        response_format={"type": "json_object"},
    )
    assert json.loads(done.choices[0].message.content or "") == {"city": "Rome", "days": 3}
    assert upstream.requests[-1]["response_format"] == {"type": "json_object"}


def test_tool_history_reaches_upstream_intact(tailor: Any, upstream: ScriptedServer) -> None:
    history: list[dict[str, Any]] = [
        {"role": "developer", "content": "Use the weather tool."},
        {"role": "user", "content": "Should I pack an umbrella for Rome?"},
        {"role": "assistant", "content": None, "tool_calls": TOOL_CALLS[:1]},
        {"role": "tool", "tool_call_id": "call_a", "content": '{"rain": "heavy storms"}'},
        {
            "role": "user",
            "content": [{"type": "text", "text": "And what should I eat there?"}],
        },
        {"role": "assistant", "content": None, "tool_calls": TOOL_CALLS[1:]},
        {"role": "tool", "tool_call_id": "call_b", "content": "sunny"},
    ]
    done = tailor["client"].chat.completions.create(model="m", user="alice", messages=history)
    assert done.choices[0].message.content == "hello from the server"
    sent = upstream.requests[-1]["messages"]
    assert [sent[0], *sent[2:]] == history  # null contents, parts, ids: all as sent
    _profile_is_second(sent)
    # the turn's query is the last *user* message, not a tool result
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        turns = httpx.get(
            f"{tailor['base']}/v1/users/alice/turns", headers=tailor["headers"]
        ).json()["items"]
        if turns:
            break
        time.sleep(0.05)
    assert turns[0]["message"] == "And what should I eat there?"


def test_models_lists_the_configured_model(tailor: Any) -> None:
    models = tailor["client"].models.list()
    assert [(m.id, m.object, m.owned_by) for m in models.data] == [
        ("served-model", "model", "tailor")
    ]
    assert isinstance(models.data[0].created, int)
    assert tailor["client"].models.retrieve("served-model").id == "served-model"
    with pytest.raises(openai.NotFoundError):
        tailor["client"].models.retrieve("gpt-4o")
    raw = httpx.get(f"{tailor['base']}/v1/models")
    assert raw.status_code == 401
    assert raw.json()["error"]["code"] == "invalid_api_key"
    listed = httpx.get(f"{tailor['base']}/v1/models", headers=tailor["headers"]).json()
    assert listed["object"] == "list"
    assert set(listed["data"][0]) == {"id", "object", "created", "owned_by"}


def test_undocumented_fields_are_still_refused(tailor: Any) -> None:
    response = httpx.post(
        f"{tailor['base']}/v1/chat/completions",
        json={"user": "alice", "messages": [{"role": "user", "content": "hi"}], "bogus": 1},
        headers=tailor["headers"],
    )
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["type"] == "extra_forbidden"


def test_a_request_the_upstream_rejects_is_422_not_502(
    tailor: Any, upstream: ScriptedServer
) -> None:
    """A tool schema the server refuses is the request's fault: a 502 would make the
    app's client retry the same request."""
    upstream.script = [Scripted(status=400)]
    with pytest.raises(openai.UnprocessableEntityError) as rejected:
        tailor["client"].chat.completions.create(
            model="m", user="alice", messages=[{"role": "user", "content": "hi"}]
        )
    error = rejected.value.response.json()["error"]
    assert error["code"] == "backend_rejected_request"
    assert "answered 400" in error["message"] and "scripted" in error["message"]


def test_a_malformed_upstream_message_is_a_clean_502(tailor: Any, upstream: ScriptedServer) -> None:
    upstream.script = [Scripted(message={"role": "assistant", "content": None, "tool_calls": [7]})]
    response = httpx.post(
        f"{tailor['base']}/v1/chat/completions",
        json={"user": "alice", "messages": [{"role": "user", "content": "hi"}]},
        headers=tailor["headers"],
    )
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "backend_error"
    assert "unusable message" in response.json()["error"]["message"]


def test_streamed_logprobs_and_refusal_pieces_come_back(
    tailor: Any, upstream: ScriptedServer
) -> None:
    deltas = [{"content": "Hi"}, {"content": " there"}, {"refusal": "no"}]
    upstream.script = [Scripted(deltas=deltas, logprobs=LOGPROBS)]
    chunks = list(
        tailor["client"].chat.completions.create(
            model="m",
            user="alice",
            messages=[{"role": "user", "content": "hi"}],
            logprobs=True,
            stream=True,
        )
    )
    middle = [c for c in chunks if c.choices and c.choices[0].finish_reason is None][1:]
    assert [c.choices[0].delta.model_dump(exclude_none=True) for c in middle] == deltas
    assert all(
        c.choices[0].logprobs is not None and c.choices[0].logprobs.model_dump() == LOGPROBS
        for c in middle
    )


def test_a_deprecated_function_message_passes_through(
    tailor: Any, upstream: ScriptedServer
) -> None:
    history: list[dict[str, Any]] = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "function_call": {"name": "w", "arguments": "{}"}},
        {"role": "function", "name": "w", "content": "sunny"},
    ]
    httpx.post(
        f"{tailor['base']}/v1/chat/completions",
        json={"user": "alice", "messages": history},
        headers=tailor["headers"],
    ).raise_for_status()
    assert upstream.requests[-1]["messages"][1:] == history
