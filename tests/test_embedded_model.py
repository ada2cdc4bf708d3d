"""The embedded SmolLM2 model for real: loaded offline from its wheel by the default
settings, behind Tailor's OpenAI-compatible endpoint on a real socket, driven by the
official `openai` client and by Tailor's own OpenAI-compatible backend. A 135M model
writes weak text, so these check structure and the call path, not wording."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from personalization.backends import GenerationSettings
from personalization.backends.llama_cpp import SMOLLM2_ID, LlamaCppBackend, packaged_smollm2_path
from personalization.backends.openai_compatible import OpenAICompatibleBackend
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
    assert streamed[-1].finish_reason in {"stop", "length"}


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
