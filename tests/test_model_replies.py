"""A misbehaving model server, over a real socket: replies of the wrong shape are a typed
backend error, the edit worker counts them as failed attempts (never leaving a job
stuck `running` or holding a place in the queue), and the chat route answers the
documented 502 `backend_error`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from personalization.backends import BackendFailed, GenerationSettings
from personalization.backends.openai_compatible import OpenAICompatibleBackend
from personalization.messages import ChatMessage
from tests.scripted_server import Scripted, ScriptedServer, completion
from tests.test_cipher import LONG, SHORT, wait_edit

HI = [ChatMessage("user", "hi")]


def _reply(**message: Any) -> str:
    body = completion("x", "served-model")
    body["choices"][0]["message"] = message.get("message", {"role": "assistant", **message})
    return json.dumps(body)


MALFORMED = {
    "content is a number": _reply(content=12345),
    "content is a list": _reply(content=["a"]),
    "message is null": _reply(message=None),
    "message is a string": _reply(message="hello"),
    "no choices": json.dumps({"id": "x", "model": "m"}),
    "choices is an object": json.dumps({"choices": {"0": {"message": {"content": "hi"}}}}),
    "choice is null": json.dumps({"choices": [None]}),
    "not JSON": "<html>bad gateway</html>",
    "JSON but not an object": "[1, 2, 3]",
    "usage is a string": json.dumps({**completion("x", "m"), "usage": "lots"}),
}


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as running:
        yield running


def backend(server: ScriptedServer) -> OpenAICompatibleBackend:
    return OpenAICompatibleBackend(server.base_url, "served-model", backoff_s=0.01, max_retries=0)


@pytest.mark.parametrize("raw", MALFORMED.values(), ids=MALFORMED.keys())
def test_wrong_shaped_reply_is_a_backend_error(server: ScriptedServer, raw: str) -> None:
    server.script = [Scripted(raw=raw)]
    with pytest.raises(BackendFailed, match="unusable"):
        backend(server).complete(HI, GenerationSettings())


def test_null_content_is_an_empty_answer(server: ScriptedServer) -> None:
    """A tool-call reply has `content: null`; that is a valid, empty answer."""
    server.script = [Scripted(raw=_reply(content=None))]
    assert backend(server).complete(HI, GenerationSettings()).text == ""


def test_wrong_shaped_stream_chunk_is_a_backend_error(server: ScriptedServer) -> None:
    chunk = {"choices": [{"index": 0, "delta": {"content": 12345}, "finish_reason": None}]}
    server.script = [Scripted(raw=f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n")]
    with pytest.raises(BackendFailed, match="unusable"):
        list(backend(server).stream(HI, GenerationSettings()))


def test_edit_worker_counts_malformed_replies_as_failed_attempts(
    start_app: Any, server: ScriptedServer
) -> None:
    server.script = [Scripted(raw=MALFORMED["content is a number"])] * 2
    api = start_app(
        backend=backend(server),
        edit_retry_backoff_s=0.01,
        edit_max_attempts=2,
        edit_queue_limit=1,
    )
    h = api.tenant()
    api.user(h, "alice")
    body = {"context": "tell the team", "draft": LONG, "edited": SHORT}
    first = api.client.post("/v1/users/alice/edits", json=body, headers=h).json()
    failed = wait_edit(api, h, first["id"])
    assert (failed["inference_status"], failed["attempts"]) == ("failed", 2)
    assert "unusable" in failed["last_error"]
    assert failed["preference_id"] is None

    # the failed edit no longer holds the tenant's only queue place; a fixed model works
    server.script = [Scripted(text="Prefers short notes.")]
    second = api.client.post("/v1/users/alice/edits", json=body, headers=h)
    assert second.status_code == 202, second.text
    done = wait_edit(api, h, second.json()["id"])
    assert (done["inference_status"], done["attempts"]) == ("done", 1)
    preference = api.client.get(
        f"/v1/users/alice/preferences/{done['preference_id']}", headers=h
    ).json()
    assert preference["text"] == "Prefers short notes."


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("raw", ["content is a number", "message is null", "not JSON"])
def test_chat_answers_502_on_a_wrong_shaped_reply(
    start_app: Any, server: ScriptedServer, raw: str, stream: bool
) -> None:
    api = start_app(backend=backend(server))
    h = api.tenant()
    api.user(h, "alice")
    if stream:
        chunk = {"choices": [{"index": 0, "delta": {"content": 12345}, "finish_reason": None}]}
        server.script = [Scripted(raw=f"data: {json.dumps(chunk)}\n\n")]
    else:
        server.script = [Scripted(raw=MALFORMED[raw])]
    response = api.client.post(
        "/v1/chat/completions",
        json={"user": "alice", "stream": stream, "messages": [{"role": "user", "content": "hi"}]},
        headers=h,
    )
    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert error["code"] == "backend_error"
    assert "unusable" in error["message"]


def test_a_stream_that_breaks_midway_ends_with_an_error_event(
    start_app: Any, server: ScriptedServer
) -> None:
    good = {"choices": [{"index": 0, "delta": {"content": "Hello"}, "finish_reason": None}]}
    bad = {"choices": [{"index": 0, "delta": {"content": 12345}, "finish_reason": None}]}
    server.script = [Scripted(raw=f"data: {json.dumps(good)}\n\ndata: {json.dumps(bad)}\n\n")]
    api = start_app(backend=backend(server))
    h = api.tenant()
    api.user(h, "alice")
    response = api.client.post(
        "/v1/chat/completions",
        json={"user": "alice", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
        headers=h,
    )
    assert response.status_code == 200
    events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    assert json.loads(events[1])["choices"][0]["delta"]["content"] == "Hello"
    error = json.loads(events[-1])["error"]
    assert error["code"] == "backend_error"
    assert "unusable chunk" in error["message"]
    assert "[DONE]" not in events
    # the connection and the app are fine afterwards
    assert api.client.get("/v1/users/alice", headers=h).status_code == 200
