"""Export holds everything stored about a user, in their scope only; importing it into
another user reproduces the same profile (round trip); deleting removes it all."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from store.models import InstructionSource
from tests.conftest import Api
from tests.fakes import RuleBackend

TURNS = ["make a travel plan", "a recipe for dinner", "tell the team the meeting moved"]


def wait_edits(api: Api, h: dict[str, str], user: str) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        items = api.client.get(f"/v1/users/{user}/edits", headers=h).json()["items"]
        if all(e["inference_status"] in {"done", "skipped", "failed"} for e in items):
            return
        time.sleep(0.05)
    raise AssertionError("edits still pending")


def fill(api: Api, h: dict[str, str], user: str) -> None:
    c = api.client
    api.instruction(h, user, text="I avoid gluten", always_on=True, source="user")
    plan = api.instruction(h, user, text="Bullet points", applies_when="travel plan")
    c.patch(
        f"/v1/users/{user}/instructions/{plan['id']}", json={"text": "Numbered steps"}, headers=h
    )
    gone = api.instruction(h, user, text="Mention the weather", always_on=True)
    c.delete(f"/v1/users/{user}/instructions/{gone['id']}", headers=h)
    off = api.instruction(h, user, text="Metric units", applies_when="recipe dinner")
    c.patch(f"/v1/users/{user}/instructions/{off['id']}", json={"status": "disabled"}, headers=h)
    c.post(
        f"/v1/users/{user}/examples",
        json={"prompt": "a recipe for dinner", "chosen": "short", "rejected": "long"},
        headers=h,
    )
    c.post(
        f"/v1/users/{user}/edits",
        json={
            "context": "tell the team the meeting moved",
            "draft": "Dear team, the weekly meeting has moved to Thursday afternoon.",
            "edited": "Meeting: Thu pm.",
        },
        headers=h,
    )
    wait_edits(api, h, user)


@pytest.fixture
def api(start_app: Any) -> Api:
    return start_app(backend=RuleBackend(), edit_retry_backoff_s=0.01)


def texts(export: dict[str, Any], kind: str) -> list[tuple[Any, ...]]:
    keys = {
        "instructions": ("text", "applies_when", "always_on", "status", "version"),
        "examples": ("prompt", "chosen", "rejected"),
        "edits": ("context", "draft", "edited", "inference_status"),
        "preferences": ("text", "status"),
    }[kind]
    return sorted(tuple(row[k] for k in keys) for row in export[kind])


def test_export_holds_everything_and_nothing_else(api: Api) -> None:
    h = api.tenant()
    api.user(h, "alice")
    api.user(h, "bob")
    fill(api, h, "alice")
    api.instruction(h, "bob", text="Bob's secret rule", always_on=True)
    export = api.client.get("/v1/users/alice/export", headers=h).json()
    assert export["format"] == "tailor-export-v1"
    assert export["user"]["id"] == "alice"
    assert len(export["instructions"]) == 6  # 4 items, one of them in 2 versions, one disabled (+1)
    assert {r["status"] for r in export["instructions"]} == {"active", "deleted", "disabled"}
    assert len(export["examples"]) == 1
    assert len(export["edits"]) == 1
    assert [p["text"] for p in export["preferences"]] == ["Prefers shorter text."]
    actions = {(a["entity"], a["action"]) for a in export["audit"]}
    assert {
        ("user", "created"),
        ("instruction", "updated"),
        ("instruction", "deleted"),
        ("edit", "created"),
    } <= actions
    raw = json.dumps(export)
    assert "Bob's secret rule" not in raw
    for vector in (
        "text_embedding",
        "condition_embedding",
        "request_embeddings",
        "prompt_embedding",
        "context_embedding",
        "lease_owner",
        "lease_expires_at",
    ):
        assert vector not in raw
    other = api.tenant("other")
    assert api.client.get("/v1/users/alice/export", headers=other).status_code == 404


def test_round_trip_reproduces_the_profile(api: Api) -> None:
    h = api.tenant()
    api.user(h, "alice")
    fill(api, h, "alice")
    export = api.client.get("/v1/users/alice/export", headers=h).json()
    api.user(h, "alice-copy")
    result = api.client.post("/v1/users/alice-copy/import", json=export, headers=h)
    assert result.status_code == 201, result.text
    assert result.json() == {
        "instructions": 3,
        "examples": 1,
        "edits": 1,
        "preferences": 1,
        "skipped": 0,
    }
    wait_edits(api, h, "alice-copy")
    copy = api.client.get("/v1/users/alice-copy/export", headers=h).json()
    current = [
        r for r in export["instructions"] if r["valid_to"] is None and r["status"] != "deleted"
    ]
    assert sorted((r["text"], r["status"]) for r in current) == sorted(
        (r["text"], r["status"]) for r in copy["instructions"] if r["valid_to"] is None
    )
    assert texts(copy, "examples") == texts(export, "examples")
    assert texts(copy, "edits") == texts(export, "edits")
    assert texts(copy, "preferences") == texts(export, "preferences")
    for turn in TURNS:
        original, restored = api.context(h, "alice", turn), api.context(h, "alice-copy", turn)
        assert [i["text"] for i in original["instructions"]] == [
            i["text"] for i in restored["instructions"]
        ]
        assert len(original["examples"]) == len(restored["examples"])
        assert (original["inferred_preference"] or {}).get("text") == (
            restored["inferred_preference"] or {}
        ).get("text")


def test_import_validates_before_writing(api: Api) -> None:
    h = api.tenant()
    api.user(h, "alice")
    bad = {
        "format": "tailor-export-v1",
        "instructions": [
            {
                "instruction_id": "00000000-0000-4000-8000-000000000001",
                "version": 1,
                "text": "ok",
                "status": "active",
            }
        ],
        "examples": [{"prompt": "p", "chosen": "c\u202e", "rejected": "r"}],
    }
    response = api.client.post("/v1/users/alice/import", json=bad, headers=h)
    assert response.status_code == 422
    assert api.client.get("/v1/users/alice/instructions", headers=h).json()["total"] == 0
    wrong = api.client.post("/v1/users/alice/import", json={"format": "other"}, headers=h)
    assert wrong.status_code == 422


def test_delete_is_complete_for_a_large_profile(api: Api) -> None:
    h = api.tenant()
    api.user(h, "alice")
    api.user(h, "bob")
    api.instruction(h, "bob", text="Bob stays", always_on=True)
    ports = api.client.app.state.ports  # type: ignore[attr-defined]
    scope = ports.users.resolve(ports.keys.authenticate(h["Authorization"][7:]), "alice")
    for i in range(1200):  # through the write path, without HTTP overhead
        ports.writer.create_instruction(
            scope,
            text=f"rule {i}",
            applies_when=f"topic {i}",
            always_on=False,
            source=InstructionSource.app,
        )
    assert api.client.get("/v1/users/alice/instructions?limit=1", headers=h).json()["total"] == 1200
    assert api.client.delete("/v1/users/alice", headers=h).status_code == 204
    export_gone = api.client.get("/v1/users/alice/export", headers=h)
    assert export_gone.status_code == 404
    assert ports.index.cache.row_count("instruction") == 1  # only bob's
    api.client.__exit__(None, None, None)
