"""The OpenAI-compatible adapter against a real HTTP server on loopback."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from personalization.backends import BackendFailed, BackendUnavailable, GenerationSettings
from personalization.backends.openai_compatible import OpenAICompatibleBackend
from personalization.messages import ChatMessage
from tests.scripted_server import Scripted, ScriptedServer

HI = [ChatMessage("user", "hi")]


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as running:
        yield running


def backend(server: ScriptedServer, **kwargs: object) -> OpenAICompatibleBackend:
    options: dict[str, object] = {"api_key": "sk-test", "backoff_s": 0.01, "max_retries": 2}
    options.update(kwargs)
    return OpenAICompatibleBackend(server.base_url, "served-model", **options)  # type: ignore[arg-type]


def test_complete_sends_the_request_and_parses_the_answer(server: ScriptedServer) -> None:
    done = backend(server).complete(
        [ChatMessage("system", "be brief"), *HI],
        GenerationSettings(max_tokens=9, temperature=0.1, stop=("END",), seed=3),
    )
    assert done.text == "hello from the server"
    assert (done.prompt_tokens, done.completion_tokens, done.model) == (3, 4, "served-model")
    sent = server.requests[0]
    assert sent["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
    ]
    assert (sent["max_tokens"], sent["temperature"], sent["stop"], sent["seed"]) == (
        9,
        0.1,
        ["END"],
        3,
    )
    assert sent["stream"] is False
    assert server.auth == ["Bearer sk-test"]


def test_retries_429_and_5xx_then_succeeds(server: ScriptedServer) -> None:
    server.script = [Scripted(status=429, headers={"Retry-After": "0"}), Scripted(status=503)]
    assert backend(server).complete(HI, GenerationSettings()).text == "hello from the server"
    assert len(server.requests) == 3


def test_gives_up_after_the_retries(server: ScriptedServer) -> None:
    server.script = [Scripted(status=500)] * 3
    with pytest.raises(BackendUnavailable, match="answered 500 after 3 attempts"):
        backend(server).complete(HI, GenerationSettings())
    assert len(server.requests) == 3


def test_client_errors_are_not_retried(server: ScriptedServer) -> None:
    server.script = [Scripted(status=400)]
    with pytest.raises(BackendFailed, match="answered 400"):
        backend(server).complete(HI, GenerationSettings())
    assert len(server.requests) == 1


def test_malformed_body_is_a_backend_error(server: ScriptedServer) -> None:
    server.script = [Scripted(raw='{"choices": []}')]
    with pytest.raises(BackendFailed, match="unusable body"):
        backend(server).complete(HI, GenerationSettings())


def test_read_timeout_is_unavailable_not_a_hang(server: ScriptedServer) -> None:
    server.script = [Scripted(delay_s=1.0)]
    start = time.monotonic()
    with pytest.raises(BackendUnavailable, match="timed out"):
        backend(server, timeout_s=0.2, max_retries=0).complete(HI, GenerationSettings())
    assert time.monotonic() - start < 1.0


def test_unreachable_server_is_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket closes
    dead = OpenAICompatibleBackend(
        f"http://127.0.0.1:{port}/v1", "m", max_retries=1, backoff_s=0.01
    )
    with pytest.raises(BackendUnavailable, match="unreachable"):
        dead.complete(HI, GenerationSettings())


def test_stream_yields_text_in_order_and_finishes(server: ScriptedServer) -> None:
    server.script = [Scripted(status=503), Scripted(text="one two three")]
    deltas = list(backend(server).stream(HI, GenerationSettings()))
    assert "".join(d.text for d in deltas) == "one two three"
    assert deltas[-1].finish_reason == "stop"
    assert server.requests[-1]["stream"] is True
