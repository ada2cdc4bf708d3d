"""The Python SDK (sdk/tailor_client) against the real app: every endpoint through the
sync client over ASGI, the async client and streams over real HTTP, the retry policy
against scripted answers, typed errors, and the install path without torch."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import tailor_client
from fastapi.testclient import TestClient
from tailor_client import RetryPolicy

from personalization.backends import Delta, GenerationSettings
from personalization.messages import ChatMessage
from service.app import create_app
from tests.conftest import ADMIN_TOKEN, make_settings, wait_ready
from tests.fakes import HashingEmbedder, RuleBackend
from tests.server_process import InThreadServer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def app_http(tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(
        make_settings(tmp_path / "data"), embedder=HashingEmbedder(), backend=RuleBackend()
    )
    with TestClient(app) as http:
        wait_ready(http)
        yield http


def _tenant_client(http: TestClient) -> tailor_client.TailorClient:
    admin = tailor_client.TailorClient(http=http)
    created = admin.create_tenant("acme", admin_token=ADMIN_TOKEN)
    assert created["tenant"]["name"] == "acme"
    assert created["api_key"]["key"].startswith("tlr_")
    http.headers["Authorization"] = f"Bearer {created['api_key']['key']}"
    return tailor_client.TailorClient(http=http)


def test_every_endpoint_through_the_sync_client(app_http: TestClient) -> None:
    client = _tenant_client(app_http)
    assert client.health()["status"] == "ok"
    assert client.ready()["status"] == "ready"

    assert client.create_user("u1")["id"] == "u1"
    assert client.get_user("u1")["id"] == "u1"
    assert [u["id"] for u in client.list_users()["items"]] == ["u1"]

    plan = client.create_instruction("u1", "Use bullet points.", applies_when="plans")
    diet = client.create_instruction("u1", "I avoid gluten.", always_on=True, source="user")
    assert (plan["version"], diet["always_on"], diet["source"]) == (1, True, "user")
    assert client.get_instruction("u1", plan["id"])["text"] == "Use bullet points."
    changed = client.update_instruction("u1", plan["id"], text="Use numbered lists.", if_version=1)
    assert changed["version"] == 2
    with pytest.raises(tailor_client.PreconditionFailedError) as stale:
        client.update_instruction("u1", plan["id"], text="x y", if_version=1)
    assert stale.value.status == 412 and stale.value.code == "precondition_failed"
    history = client.instruction_history("u1", plan["id"])
    assert [v["text"] for v in history["versions"]] == ["Use bullet points.", "Use numbered lists."]
    restored = client.restore_instruction("u1", plan["id"], 1, if_version=2)
    assert (restored["version"], restored["text"]) == (3, "Use bullet points.")
    assert client.list_instructions("u1", status="active")["total"] == 2
    client.delete_instruction("u1", diet["id"])
    with pytest.raises(tailor_client.NotFoundError) as gone:
        client.get_instruction("u1", diet["id"])
    assert gone.value.code == "instruction_not_found"

    example = client.create_example("u1", prompt="Summarise", chosen="- a", rejected="A long text")
    assert client.get_example("u1", example["id"])["chosen"] == "- a"
    assert client.list_examples("u1")["total"] == 1
    client.delete_example("u1", example["id"])
    assert client.list_examples("u1")["total"] == 0

    edit = client.record_edit(
        "u1",
        context="Write a note",
        draft="Dear team, the meeting has been moved to Thursday afternoon this week.",
        edited="Meeting moved to Thu.",
        idempotency_key="edit-1",
    )
    done = client.wait_edit("u1", edit["id"], timeout_s=60)
    assert done["inference_status"] == "done" and done["preference_id"]
    assert client.list_edits("u1")["items"][0]["id"] == edit["id"]
    preference = client.list_preferences("u1", status="suggested")["items"][0]
    assert preference["text"] == "Prefers shorter text."
    assert client.get_preference("u1", preference["id"])["version"] == 1
    accepted = client.update_preference("u1", preference["id"], status="accepted", if_version=1)
    assert accepted["status"] == "accepted"
    promoted = client.promote_preference("u1", preference["id"], always_on=True)
    assert promoted["instruction"]["text"] == "Prefers shorter text."
    assert promoted["preference"]["status"] == "promoted"
    statuses = [v["status"] for v in client.preference_history("u1", preference["id"])["versions"]]
    assert statuses == ["suggested", "accepted", "promoted"]

    context = client.context("u1", "Plan my week", top_k=5)
    applied = {i["text"] for i in context["instructions"]}
    assert {"Use bullet points.", "Prefers shorter text."} <= applied
    assert context["system_message"] is not None

    reply = client.chat("Plan my week", user="u1", max_tokens=64)
    assert reply["choices"][0]["message"]["content"]
    used = {item["id"] for item in reply["tailor"]["profile_items"]}
    assert plan["id"] in used
    chunks = list(client.chat_stream([{"role": "user", "content": "Plan"}], user="u1"))
    assert chunks[0]["tailor"]["user_id"] == "u1"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == RuleBackend().answer
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    turns = client.turns("u1", limit=10)
    assert {t["endpoint"] for t in turns["items"]} == {"chat", "context"}

    exported = client.export_user("u1")
    assert exported["format"] == "tailor-export-v1"
    client.create_user("u2")
    imported = client.import_user("u2", exported)
    assert imported["instructions"] >= 2 and imported["skipped"] == 0
    again = client.import_user("u2", exported)
    assert again["skipped"] > 0 and again["instructions"] == 0

    session = client.create_session("u1")
    assert "#user=u1" in session["url"]
    client.end_session("u1", session["id"])

    bound = client.create_key("phone", user_id="u1")
    assert bound["user_id"] == "u1"
    assert bound["id"] in {k["id"] for k in client.list_keys()}
    client.revoke_key(bound["id"])
    revoked = next(k for k in client.list_keys() if k["id"] == bound["id"])
    assert revoked["revoked_at"] is not None

    client.delete_user("u2")
    with pytest.raises(tailor_client.NotFoundError):
        client.get_user("u2")


PEANUTS = "I'm allergic to peanuts, by the way."


class PassthroughRecorder(RuleBackend):
    """RuleBackend that also keeps the OpenAI fields each generation was handed, so a
    test sees what the SDK's `extra=` got through the real route."""

    def __init__(self) -> None:
        super().__init__()
        self.passthrough: list[dict[str, Any]] = []

    def complete(self, messages: Sequence[ChatMessage], settings: GenerationSettings) -> Any:
        self.passthrough.append(dict(settings.passthrough))
        return super().complete(messages, settings)

    def stream(
        self, messages: Sequence[ChatMessage], settings: GenerationSettings
    ) -> Iterator[Delta]:
        self.passthrough.append(dict(settings.passthrough))
        return super().stream(messages, settings)


def test_capture_round_trip_through_the_sync_client(app_http: TestClient) -> None:
    client = _tenant_client(app_http)
    client.create_user("u1")
    submitted = client.submit_conversation(
        "u1",
        [{"role": "user", "content": PEANUTS}, {"role": "assistant", "content": "Noted!"}],
        conversation_id="chat-7",
        idempotency_key="capture-1",
    )
    assert (submitted["status"], submitted["conversation_id"]) == ("pending", "chat-7")
    again = client.submit_conversation(
        "u1",
        [{"role": "user", "content": PEANUTS}, {"role": "assistant", "content": "Noted!"}],
        conversation_id="chat-7",
        idempotency_key="capture-1",
    )
    assert again["id"] == submitted["id"]  # the key made the retry safe
    done = client.wait_conversation("u1", submitted["id"], timeout_s=60)
    assert (done["status"], done["error"]) == ("done", None)
    [pending] = client.list_suggestions("u1")["data"]
    assert done["suggestions"] == [pending["id"]]
    assert PEANUTS.split(",")[0] in pending["quote"]
    assert (pending["action"], pending["capture_id"]) == ("new", submitted["id"])
    assert client.list_suggestions("u1", status="accepted")["data"] == []

    accepted = client.accept_suggestion("u1", pending["id"], text="Never suggest peanuts.")
    instruction = accepted["instruction"]
    assert accepted["suggestion"]["status"] == "accepted"
    assert (instruction["text"], instruction["source"]) == (
        "Never suggest peanuts.",
        "conversation",
    )
    assert instruction.get("capture_quote") == pending["quote"]
    assert client.get_instruction("u1", instruction["id"])["source"] == "conversation"
    with pytest.raises(tailor_client.SuggestionAlreadyDecidedError) as decided:
        client.accept_suggestion("u1", pending["id"])
    assert isinstance(decided.value, tailor_client.ConflictError)
    assert (decided.value.status, decided.value.code) == (409, "suggestion_already_decided")
    with pytest.raises(tailor_client.SuggestionAlreadyDecidedError):
        client.reject_suggestion("u1", pending["id"])
    [kept] = client.list_suggestions("u1", status="accepted")["data"]
    assert kept["id"] == pending["id"]

    with pytest.raises(tailor_client.NotFoundError):
        client.get_conversation("nobody", submitted["id"])
    with pytest.raises(tailor_client.ValidationError) as empty:
        client.submit_conversation("u1", [])
    assert empty.value.code == "invalid_request"


def test_reject_through_the_sync_client(app_http: TestClient) -> None:
    client = _tenant_client(app_http)
    client.create_user("u1")
    capture = client.submit_conversation("u1", PEANUTS)
    assert client.wait_conversation("u1", capture["id"], timeout_s=60)["status"] == "done"
    [pending] = client.list_suggestions("u1")["data"]
    rejected = client.reject_suggestion("u1", pending["id"])
    assert (rejected["id"], rejected["status"]) == (pending["id"], "rejected")
    assert client.list_suggestions("u1")["data"] == []
    assert client.list_instructions("u1")["total"] == 0


def test_models_extra_fields_and_the_usage_chunk(tmp_path: Path) -> None:
    backend = PassthroughRecorder()
    app = create_app(make_settings(tmp_path / "data"), embedder=HashingEmbedder(), backend=backend)
    with TestClient(app) as http:
        wait_ready(http)
        client = _tenant_client(http)
        listed = client.models()
        assert listed["object"] == "list"
        assert [(m["id"], m["object"]) for m in listed["data"]] == [("test/recording", "model")]
        assert client.model("test/recording")["id"] == "test/recording"  # a slash in the id
        with pytest.raises(tailor_client.NotFoundError) as unknown:
            client.model("gpt-4o")
        assert unknown.value.code == "model_not_found"

        client.create_user("u1")
        tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
        reply = client.chat(
            "Plan", user="u1", extra={"tools": tools, "response_format": {"type": "text"}}
        )
        assert reply["choices"][0]["message"]["content"] == backend.answer
        assert backend.passthrough[-1] == {"tools": tools, "response_format": {"type": "text"}}

        chunks = list(
            client.chat_stream("Plan", user="u1", extra={"stream_options": {"include_usage": True}})
        )
        *content, last = chunks
        assert last["choices"] == []  # the usage chunk OpenAI sends last
        usage = last.get("usage")
        assert usage is not None and usage["total_tokens"] == (
            usage["prompt_tokens"] + usage["completion_tokens"]
        )
        assert usage["completion_tokens"] > 0
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in content)
        assert text == backend.answer
        assert all(c.get("usage") is None for c in content)


def test_errors_are_typed_by_status_and_code(app_http: TestClient) -> None:
    client = _tenant_client(app_http)
    client.create_user("u1")
    with pytest.raises(tailor_client.ConflictError) as exists:
        client.create_user("u1")
    assert (exists.value.status, exists.value.code) == (409, "user_exists")
    with pytest.raises(tailor_client.ValidationError) as invalid:
        client.create_instruction("u1", "")
    assert invalid.value.code == "invalid_request" and invalid.value.details
    with pytest.raises(tailor_client.NotFoundError) as missing:
        client.context("nobody", "hi")
    assert missing.value.code == "user_not_found"
    outsider = tailor_client.TailorClient(
        http=app_http, api_key="tlr_not-a-real-key-000000000000000000000000000"
    )
    with pytest.raises(tailor_client.UnauthorizedError):
        outsider.list_users()


def _scripted(answers: list[httpx.Response]) -> tuple[httpx.MockTransport, list[str]]:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Authorization", ""))
        return answers.pop(0)

    return httpx.MockTransport(handler), seen


def _busy(status: int, retry_after: str | None) -> httpx.Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    body = {"error": {"code": "rate_limited", "message": "slow down"}}
    return httpx.Response(status, json=body, headers=headers)


def test_retries_wait_as_told_by_retry_after_and_give_up_when_bounded() -> None:
    transport, seen = _scripted(
        [
            _busy(429, "3"),
            _busy(503, "120"),
            httpx.Response(200, json={"id": "u", "created_at": "t"}),
        ]
    )
    waits: list[float] = []
    client = tailor_client.TailorClient(
        "http://tailor.test", "tlr_k", transport=transport, sleep=waits.append
    )
    assert client.get_user("u")["id"] == "u"
    assert waits == [3.0, 30.0]  # as told, and capped at max_wait_s
    assert seen == ["Bearer tlr_k"] * 3

    transport, _ = _scripted([_busy(429, None) for _ in range(3)])
    waits.clear()
    client = tailor_client.TailorClient(
        "http://tailor.test",
        transport=transport,
        retry=RetryPolicy(max_retries=2, backoff_s=0.25),
        sleep=waits.append,
    )
    with pytest.raises(tailor_client.RateLimitedError) as refused:
        client.list_users()
    assert waits == [0.25, 0.5]  # no Retry-After: doubling backoff, then give up
    assert refused.value.retry_after is None and refused.value.message == "slow down"


def test_non_json_errors_and_codes_map_to_classes() -> None:
    transport, _ = _scripted(
        [
            httpx.Response(502, text="<html>bad gateway</html>"),
            httpx.Response(409, json={"error": {"code": "concurrent_update", "message": "m"}}),
            _coded(429, "capture_queue_full"),
            _coded(422, "unsupported_parameter"),
            _coded(422, "backend_rejected_request"),
        ]
    )
    client = tailor_client.TailorClient("http://t", transport=transport)
    with pytest.raises(tailor_client.BackendError) as proxy:
        client.list_keys()
    assert proxy.value.code == "http_error" and "bad gateway" in proxy.value.message
    with pytest.raises(tailor_client.ConcurrentUpdateError):
        client.update_instruction("u", "i", text="x")
    client.retry = RetryPolicy(max_retries=0)
    with pytest.raises(tailor_client.RateLimitedError) as full:
        client.submit_conversation("u", "hi")
    assert full.value.code == "capture_queue_full"
    for code in ("unsupported_parameter", "backend_rejected_request"):
        with pytest.raises(tailor_client.ValidationError) as refused:
            client.chat("hi", user="u", extra={"tools": []})
        assert refused.value.code == code
    # Midway through a stream only the code is left to type the error by.
    assert tailor_client.errors.error_class(200, "suggestion_already_decided") is (
        tailor_client.SuggestionAlreadyDecidedError
    )
    assert tailor_client.errors.error_class(200, "backend_rejected_request") is (
        tailor_client.ValidationError
    )


def _coded(status: int, code: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": code}})


def test_async_client_over_real_http(tmp_path: Path) -> None:
    app = create_app(
        make_settings(tmp_path / "data"), embedder=HashingEmbedder(), backend=RuleBackend()
    )
    server = InThreadServer(app)
    base = server.start()
    try:
        asyncio.run(_async_session(base))
        # The sync client's stream over a real socket, too.
        key = httpx.post(
            f"{base}/v1/tenants",
            json={"name": "b"},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        ).json()["api_key"]["key"]
        with tailor_client.TailorClient(base, key) as client:
            client.create_user("s")
            chunks = list(client.chat_stream("Plan", user="s"))
            assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
            with pytest.raises(tailor_client.NotFoundError):
                list(client.chat_stream("Plan", user="nobody"))
    finally:
        server.stop()


async def _async_session(base: str) -> None:
    async with tailor_client.AsyncTailorClient(base) as admin:
        created = await admin.create_tenant("a", admin_token=ADMIN_TOKEN)
    async with tailor_client.AsyncTailorClient(base, created["api_key"]["key"]) as client:
        assert (await client.ready())["status"] == "ready"
        await client.create_user("a1")
        added = await client.create_instruction("a1", "Answer in French.", always_on=True)
        context = await client.context("a1", "Hello")
        assert [i["id"] for i in context["instructions"]] == [added["id"]]
        reply = await client.chat("Hello", user="a1")
        assert reply["tailor"]["profile_items"][0]["id"] == added["id"]
        chunks = [chunk async for chunk in client.chat_stream("Hello", user="a1")]
        assert chunks[0]["tailor"]["user_id"] == "a1"
        with pytest.raises(tailor_client.NotFoundError):
            await client.get_user("nobody")
        models = await client.models()
        assert (await client.model(models["data"][0]["id"]))["owned_by"]
        usage_options = {"stream_options": {"include_usage": True}}
        streamed = [c async for c in client.chat_stream("Hi", user="a1", extra=usage_options)]
        assert streamed[-1]["choices"] == [] and streamed[-1].get("usage")

        capture = await client.submit_conversation("a1", PEANUTS, idempotency_key="k1")
        done = await client.wait_conversation("a1", capture["id"], timeout_s=60)
        assert done["status"] == "done"
        [pending] = (await client.list_suggestions("a1"))["data"]
        assert PEANUTS.split(",")[0] in pending["quote"]
        accepted = await client.accept_suggestion("a1", pending["id"])
        assert accepted["instruction"]["source"] == "conversation"
        assert accepted["instruction"]["text"] == pending["text"]
        with pytest.raises(tailor_client.SuggestionAlreadyDecidedError):
            await client.accept_suggestion("a1", pending["id"])

        await client.delete_user("a1")
        assert (await client.list_users())["total"] == 0


def test_the_sdk_installs_alone_and_imports_without_torch(tmp_path: Path) -> None:
    """`pip install ./sdk` builds from sdk/ alone (no network, no index); importing the
    installed package pulls in neither torch nor the service."""
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--no-build-isolation",
            "--target",
            str(target),
            str(ROOT / "sdk"),
        ],
        check=True,
        cwd=tmp_path,
    )
    probe = (
        "import sys, json; sys.path.insert(0, sys.argv[1]); import tailor_client; "
        "print(json.dumps({'file': tailor_client.__file__, "
        "'heavy': sorted(m for m in ('torch', 'service', 'store', 'personalization') "
        "if m in sys.modules)}))"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", probe, str(target)],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    found = json.loads(out.stdout)
    assert found["file"].startswith(str(target))
    assert found["heavy"] == []
    assert (target / "tailor_client" / "py.typed").exists()


def _readme_sdk_blocks() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Python SDK", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.DOTALL)


def test_the_readme_quickstart_runs_as_written(tmp_path: Path) -> None:
    """The README's sync and async examples, run unchanged in a fresh interpreter with
    only the SDK importable, against a served app."""
    blocks = _readme_sdk_blocks()
    assert len(blocks) == 2
    app = create_app(
        make_settings(tmp_path / "data"), embedder=HashingEmbedder(), backend=RuleBackend()
    )
    server = InThreadServer(app)
    base = server.start()
    try:
        with tailor_client.TailorClient(base) as admin:
            key = admin.create_tenant("readme", admin_token=ADMIN_TOKEN)["api_key"]["key"]
        env = {"TAILOR_URL": base, "TAILOR_API_KEY": key, "PATH": os.environ.get("PATH", "")}
        env["PYTHONPATH"] = str(ROOT / "sdk")
        outputs = []
        for i, block in enumerate(blocks):
            script = tmp_path / f"readme_{i}.py"
            script.write_text(block)
            done = subprocess.run(
                [sys.executable, str(script)],
                env=env,
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, done.stderr
            outputs.append(done.stdout)
    finally:
        server.stop()
    assert "always_on I avoid gluten" in outputs[0]
    assert "<<<USER_PROFILE" in outputs[0]
    assert "409 user_exists" in outputs[0]
    assert outputs[1].startswith("1 instructions apply")
    assert RuleBackend().answer in outputs[1]


def test_a_stream_that_fails_midway_raises_the_error_event() -> None:
    events = (
        'data: {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m", '
        '"choices": [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": null}]}\n\n'
        'data: {"error": {"code": "backend_unavailable", "message": "model went away"}}\n\n'
    )

    def handler(request: httpx.Request) -> httpx.Response:
        assert json.loads(request.content)["stream"] is True
        return httpx.Response(200, text=events, headers={"Content-Type": "text/event-stream"})

    client = tailor_client.TailorClient("http://t", transport=httpx.MockTransport(handler))
    stream = client.chat_stream("hi", user="u")
    assert next(stream)["choices"][0]["delta"]["content"] == "Hel"
    with pytest.raises(tailor_client.BackendError) as failed:
        next(stream)
    assert (failed.value.code, failed.value.message) == ("backend_unavailable", "model went away")
