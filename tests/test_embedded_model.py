"""The embedded SmolLM2 model for real: loaded offline from its wheel by the default
settings, behind Tailor's OpenAI-compatible endpoint on a real socket, driven by the
official `openai` client and by Tailor's own OpenAI-compatible backend. A 135M model
writes weak text, so these check structure and the call path, not wording."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from personalization.backends import GenerationSettings
from personalization.backends.llama_cpp import SMOLLM2_ID, LlamaCppBackend, packaged_smollm2_path
from personalization.backends.openai_compatible import OpenAICompatibleBackend
from personalization.compose import new_marker
from personalization.embedder import SentenceTransformerEmbedder
from personalization.messages import ChatMessage
from service.app import create_app
from tests.conftest import ADMIN_TOKEN, make_settings
from tests.server_process import InThreadServer, free_port

pytestmark = pytest.mark.slow
SHORT = GenerationSettings(max_tokens=24, temperature=0.0, seed=7)


def test_packaged_gguf_loads_and_generates() -> None:
    assert packaged_smollm2_path().name.endswith(".gguf")
    backend = LlamaCppBackend(n_ctx=1024)
    done = backend.complete([ChatMessage("user", "Name a colour.")], SHORT)
    assert done.text.strip()
    assert done.finish_reason in {"stop", "length"}
    assert 0 < done.completion_tokens <= 24
    assert done.prompt_tokens > 3
    streamed = list(backend.stream([ChatMessage("user", "Name a colour.")], SHORT))
    assert "".join(d.text for d in streamed).strip()
    assert streamed[-1].finish_reason == done.finish_reason
    # a stream's usage is computed from the token counts: the same as the answer's
    assert streamed[-1].usage == {
        "prompt_tokens": done.prompt_tokens,
        "completion_tokens": done.completion_tokens,
        "total_tokens": done.prompt_tokens + done.completion_tokens,
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    port = free_port()
    settings = make_settings(Path(tmp_path_factory.mktemp("embedded")), port=port)
    app = create_app(settings, embedder=SentenceTransformerEmbedder())  # default backend
    uv = InThreadServer(app, port)
    base = uv.start(timeout=120)
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    key = httpx.post(f"{base}/v1/tenants", json={"name": "t"}, headers=admin).json()["api_key"][
        "key"
    ]
    h = {"Authorization": f"Bearer {key}"}
    httpx.post(f"{base}/v1/users", json={"id": "sam"}, headers=h).raise_for_status()
    httpx.post(
        f"{base}/v1/users/sam/instructions",
        json={"text": "Always answer in one short sentence.", "always_on": True},
        headers=h,
    ).raise_for_status()
    bound = httpx.post(f"{base}/v1/keys", json={"user_id": "sam"}, headers=h).json()["key"]
    yield {"base": base, "key": key, "bound": bound}
    uv.stop()


def test_openai_client_chat_with_the_embedded_model(server: dict[str, Any]) -> None:
    client = openai.OpenAI(base_url=f"{server['base']}/v1", api_key=server["key"], max_retries=0)
    done = client.chat.completions.create(
        model="tailor",
        user="sam",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=24,
        temperature=0,
    )
    assert done.model == SMOLLM2_ID
    assert (done.choices[0].message.content or "").strip()
    assert done.choices[0].finish_reason in {"stop", "length"}
    assert done.usage is not None
    assert done.usage.completion_tokens > 0
    used = (done.model_extra or {})["tailor"]["profile_items"]
    assert [i["reason"] for i in used] == ["always_on"]


def test_openai_client_streams_from_the_embedded_model(server: dict[str, Any]) -> None:
    client = openai.OpenAI(base_url=f"{server['base']}/v1", api_key=server["key"], max_retries=0)
    chunks = list(
        client.chat.completions.create(
            model="tailor",
            user="sam",
            stream=True,
            messages=[{"role": "user", "content": "Say hello."}],
            max_tokens=16,
            temperature=0,
        )
    )
    assert len(chunks) >= 3
    assert "".join(c.choices[0].delta.content or "" for c in chunks).strip()
    assert chunks[-1].choices[0].finish_reason in {"stop", "length"}


def test_openai_compatible_backend_against_a_real_server(server: dict[str, Any]) -> None:
    """Tailor's chat endpoint with a user-bound key is an OpenAI-compatible server for
    the embedded model: the production adapter talks to it over a real socket."""
    remote = OpenAICompatibleBackend(
        f"{server['base']}/v1", "anything", api_key=server["bound"], timeout_s=120
    )
    done = remote.complete([ChatMessage("user", "Name a fruit.")], SHORT)
    assert done.model == SMOLLM2_ID
    assert done.text.strip()
    deltas = list(remote.stream([ChatMessage("user", "Name a fruit.")], SHORT))
    assert "".join(d.text for d in deltas).strip()
    assert deltas[-1].finish_reason in {"stop", "length"}


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
CAPITAL = [{"role": "user", "content": "What is the capital of Italy? Answer in JSON."}]


def test_embedded_json_mode_and_forced_tool_call(server: dict[str, Any]) -> None:
    """llama.cpp's grammars: JSON mode, a JSON Schema, and a named tool's parameters."""
    client = openai.OpenAI(base_url=f"{server['base']}/v1", api_key=server["key"], max_retries=0)
    ask: dict[str, Any] = {"model": "t", "user": "sam", "temperature": 0, "seed": 7}
    as_json = client.chat.completions.create(
        messages=CAPITAL, response_format={"type": "json_object"}, max_tokens=48, **ask
    )
    content = as_json.choices[0].message.content or ""
    assert content.lstrip().startswith("{")
    if as_json.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(content), dict)

    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    shaped = client.chat.completions.create(
        messages=CAPITAL,
        response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema}},
        max_tokens=48,
        **ask,
    )
    shaped_text = shaped.choices[0].message.content or ""
    assert shaped_text.lstrip().startswith("{")
    if shaped.choices[0].finish_reason == "stop":  # the grammar's promise: whole JSON
        assert isinstance(json.loads(shaped_text)["city"], str)

    weather = [{"role": "user", "content": "What is the weather in Rome?"}]
    tool_choice: Any = {"type": "function", "function": {"name": "get_weather"}}
    called = client.chat.completions.create(
        messages=weather, tools=[WEATHER], tool_choice=tool_choice, max_tokens=48, **ask
    )
    choice = called.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_weather"]  # type: ignore[union-attr]
    arguments = json.loads(calls[0].function.arguments)  # type: ignore[union-attr]
    assert isinstance(arguments["city"], str)
    assert called.usage is not None

    chunks = list(
        client.chat.completions.create(
            messages=weather,
            tools=[WEATHER],
            tool_choice=tool_choice,
            max_tokens=48,
            stream=True,
            stream_options={"include_usage": True},
            **ask,
        )
    )
    pieces = [t for c in chunks if c.choices for t in c.choices[0].delta.tool_calls or []]
    assert "".join(p.function.name or "" for p in pieces if p.function) == "get_weather"
    assert [p.id for p in pieces if p.id] == [pieces[0].id]  # the id once, as OpenAI does
    streamed_args = "".join(p.function.arguments or "" for p in pieces if p.function)
    # the profile block's delimiter is random per turn, so the two prompts differ a
    # little and so may the model's words: the same shape, not the same city
    assert isinstance(json.loads(streamed_args)["city"], str)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    # the backend test above checks the counts exactly; here the two prompts differ only
    # in the profile block's random marker, said three times (preamble, open, close), and
    # a marker's hex characters are at least one token together and at most one each
    marker_chars = 3 * len(new_marker())
    assert abs(chunks[-1].usage.prompt_tokens - called.usage.prompt_tokens) <= marker_chars
    assert 0 < chunks[-1].usage.completion_tokens <= 48


@pytest.mark.parametrize(
    ("extra", "parameter"),
    [
        ({"logprobs": True}, "logprobs"),
        ({"tools": [WEATHER]}, "tools"),
        ({"tools": [WEATHER], "tool_choice": "auto"}, "tool_choice"),
        ({"store": True}, "store"),
    ],
)
def test_embedded_refuses_what_it_cannot_honour(
    server: dict[str, Any], extra: dict[str, Any], parameter: str
) -> None:
    client = openai.OpenAI(base_url=f"{server['base']}/v1", api_key=server["key"], max_retries=0)
    for stream in (False, True):
        with pytest.raises(openai.UnprocessableEntityError) as refused:
            client.chat.completions.create(
                model="t", user="sam", messages=CAPITAL, max_tokens=8, stream=stream, **extra
            )
        error = refused.value.response.json()["error"]
        assert error["code"] == "unsupported_parameter"
        assert f"`{parameter}`" in error["message"]
        assert set(error) == {"code", "message"}
