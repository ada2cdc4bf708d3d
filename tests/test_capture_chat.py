"""The issue's done-when, over real HTTP: with TAILOR_CAPTURE_CHAT on, a chat through
Tailor (an OpenAI-compatible model server scripted on loopback, the official `openai`
client as the app) in which the user says "I'm allergic to peanuts" leads to a pending
suggestion with that quote; once accepted, it is in the next relevant turn's context.
One variant runs with the real MiniLM embedder."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI

from service.app import create_app
from tests.conftest import ADMIN_TOKEN, make_settings
from tests.fakes import HashingEmbedder
from tests.scripted_server import Scripted, ScriptedServer
from tests.server_process import InThreadServer


@pytest.fixture
def model() -> Iterator[ScriptedServer]:
    with ScriptedServer() as running:
        yield running


def serve(tmp_path: Path, database_url: str | None, model: ScriptedServer, embedder: Any) -> Any:
    settings = make_settings(
        tmp_path / "data",
        database_url=database_url,
        model_backend="openai",
        model_base_url=model.base_url,
        model_name="served-model",
        capture_chat=True,
    )
    return InThreadServer(create_app(settings, embedder=embedder))


@pytest.mark.parametrize("embedder", ["hashing", pytest.param("minilm", marks=pytest.mark.slow)])
def test_a_stated_allergy_in_chat_is_suggested_then_applied_once_accepted(
    tmp_path: Path, database_url: str | None, model: ScriptedServer, embedder: str
) -> None:
    server = serve(
        tmp_path, database_url, model, HashingEmbedder() if embedder == "hashing" else None
    )
    base = server.start(timeout=180)
    try:
        with httpx.Client(base_url=base, timeout=30) as http:
            admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            tenant = http.post("/v1/tenants", json={"name": "acme"}, headers=admin)
            key = tenant.json()["api_key"]["key"]
            h = {"Authorization": f"Bearer {key}"}
            assert http.post("/v1/users", json={"id": "alice"}, headers=h).status_code == 201

            app = OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)
            model.script.append(Scripted(text="Roasted chickpeas are a good snack."))
            answer = app.chat.completions.create(
                model="served-model",
                user="alice",
                messages=[
                    {"role": "system", "content": "You are a cooking assistant."},
                    {"role": "user", "content": "I'm allergic to peanuts. What's a good snack?"},
                ],
            )
            assert answer.choices[0].message.content == "Roasted chickpeas are a good snack."

            deadline = time.monotonic() + 60
            pending: list[Any] = []
            while not pending and time.monotonic() < deadline:
                pending = http.get("/v1/users/alice/suggestions", headers=h).json()["data"]
                time.sleep(0.1)
            [suggestion] = pending
            assert "I'm allergic to peanuts" in suggestion["quote"]
            assert suggestion["status"] == "pending"

            turn = {"messages": [{"role": "user", "content": "Suggest a snack for my hike"}]}
            before = http.post("/v1/users/alice/context", json=turn, headers=h).json()
            assert "peanut" not in str(before["system_message"])

            accepted = http.post(
                f"/v1/users/alice/suggestions/{suggestion['id']}/accept", headers=h
            )
            assert accepted.status_code == 200, accepted.text
            assert accepted.json()["instruction"]["source"] == "conversation"

            after = http.post("/v1/users/alice/context", json=turn, headers=h).json()
            assert "allergic to peanuts" in after["system_message"]["content"]

            # the next chat turn sends the profile to the model, and the assistant's
            # earlier answer in the history is not read as the user's preference
            model.script.append(Scripted(text="Try trail mix without nuts."))
            app.chat.completions.create(
                model="served-model",
                user="alice",
                messages=[
                    {"role": "user", "content": "I'm allergic to peanuts. What's a good snack?"},
                    {"role": "assistant", "content": "I love peanut butter. I prefer crunchy."},
                    {"role": "user", "content": "Something for a hike?"},
                ],
            )
            sent = model.requests[-1]["messages"]
            assert any("allergic to peanuts" in m["content"] for m in sent if m["role"] == "system")
            time.sleep(1.0)  # give the worker the turn's job
            assert http.get("/v1/users/alice/suggestions", headers=h).json()["data"] == []
    finally:
        server.stop()
