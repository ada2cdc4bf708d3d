"""Conversation capture over the API, on SQLite and PostgreSQL: a stated preference
becomes a pending suggestion with the user's quote; accepting it makes a standing
instruction (or a new version of the one it contradicts) that turns then select;
rejecting it stops it for good; repeats reinforce; assistant text is never evidence;
another user's or tenant's suggestion is 404; deleting the user removes it all."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.conftest import Api

H = dict[str, str]


def submit(api: Api, h: H, *messages: tuple[str, str], user: str = "alice", **extra: Any) -> Any:
    body = {"messages": [{"role": r, "content": c} for r, c in messages], **extra}
    response = api.client.post(f"/v1/users/{user}/conversations", json=body, headers=h)
    assert response.status_code == 202, response.text
    return response.json()


def wait_capture(api: Api, h: H, capture_id: str, user: str = "alice") -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        response = api.client.get(f"/v1/users/{user}/conversations/{capture_id}", headers=h)
        assert response.status_code == 200, response.text
        job: dict[str, Any] = response.json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"capture still {job['status']}")


def captured(api: Api, h: H, *messages: tuple[str, str], user: str = "alice") -> dict[str, Any]:
    job = wait_capture(api, h, submit(api, h, *messages, user=user)["id"], user)
    assert job["status"] == "done", job
    return job


def suggestions(api: Api, h: H, status: str = "pending", user: str = "alice") -> list[Any]:
    response = api.client.get(f"/v1/users/{user}/suggestions?status={status}", headers=h)
    assert response.status_code == 200, response.text
    data: list[Any] = response.json()["data"]
    return data


@pytest.fixture
def api(start_app: Any) -> tuple[Api, H]:
    app = start_app(edit_retry_backoff_s=0.01)
    h = app.tenant()
    app.user(h, "alice")
    return app, h


def test_a_stated_preference_becomes_a_suggestion_and_accepting_it_applies_it(
    api: tuple[Api, H],
) -> None:
    app, h = api
    created = submit(
        app,
        h,
        ("system", "You are a helpful assistant."),
        ("user", "I'm allergic to peanuts. What can I snack on?"),
        ("assistant", "Try apple slices."),
        conversation_id="chat-1",
    )
    assert (created["status"], created["conversation_id"]) == ("pending", "chat-1")
    job = wait_capture(app, h, created["id"])
    [pending] = suggestions(app, h)
    assert job["suggestions"] == [pending["id"]]
    assert "I'm allergic to peanuts" in pending["quote"]
    assert "allergic to peanuts" in pending["text"]
    assert (pending["action"], pending["status"], pending["seen_count"]) == ("new", "pending", 1)
    assert (pending["capture_id"], pending["conversation_id"]) == (created["id"], "chat-1")
    assert job["error"] is None

    # pending: not applied to turns
    before = app.context(h, "alice", "Suggest a snack for my afternoon")
    assert "peanut" not in (before["system_message"] or {}).get("content", "")

    accepted = app.client.post(
        f"/v1/users/alice/suggestions/{pending['id']}/accept",
        json={"text": "I'm allergic to peanuts: never suggest peanuts."},
        headers=h,
    )
    assert accepted.status_code == 200, accepted.text
    body = accepted.json()
    assert body["suggestion"]["status"] == "accepted"
    instruction = body["instruction"]
    assert instruction["text"] == "I'm allergic to peanuts: never suggest peanuts."
    assert instruction["source"] == "conversation"
    assert (instruction["capture_id"], instruction["capture_quote"]) == (
        created["id"],
        pending["quote"],
    )
    after = app.context(h, "alice", "Suggest a snack for my afternoon")
    assert "never suggest peanuts" in after["system_message"]["content"]
    assert suggestions(app, h) == []
    assert [s["id"] for s in suggestions(app, h, "accepted")] == [pending["id"]]

    again = app.client.post(f"/v1/users/alice/suggestions/{pending['id']}/accept", headers=h)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "suggestion_already_decided"

    # stating it again reinforces the instruction and suggests nothing
    job = captured(app, h, ("user", "Remember: i'm ALLERGIC to peanuts!"))
    assert job["suggestions"] == []
    assert suggestions(app, h) == []
    current = app.client.get(f"/v1/users/alice/instructions/{instruction['id']}", headers=h).json()
    assert current["seen_count"] == 1
    assert current["last_seen_at"] is not None


def test_assistant_and_system_text_is_never_evidence(api: tuple[Api, H]) -> None:
    app, h = api
    job = captured(
        app,
        h,
        ("system", "I always answer in French. I'm allergic to nonsense."),
        ("assistant", "I'm an assistant. I love helping. I prefer short answers."),
        ("tool", "I'm vegan."),
        ("user", "What is the capital of Peru?"),
    )
    assert job["suggestions"] == []
    assert suggestions(app, h) == []


def test_rejected_is_not_suggested_again_and_repeats_are_counted(api: tuple[Api, H]) -> None:
    app, h = api
    captured(app, h, ("user", "I love spicy food."))
    [first] = suggestions(app, h)
    rejected = app.client.post(f"/v1/users/alice/suggestions/{first['id']}/reject", headers=h)
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["status"] == "rejected"
    job = captured(app, h, ("user", "I LOVE spicy food!"))
    assert job["suggestions"] == [first["id"]]
    assert suggestions(app, h) == []
    [still] = suggestions(app, h, "rejected")
    assert (still["id"], still["seen_count"]) == (first["id"], 2)
    twice = app.client.post(f"/v1/users/alice/suggestions/{first['id']}/reject", headers=h)
    assert twice.status_code == 409


def test_a_contradiction_supersedes_the_instruction_and_keeps_its_history(
    api: tuple[Api, H],
) -> None:
    app, h = api
    old = app.instruction(h, "alice", text="I'm vegetarian.", source="user")
    captured(app, h, ("user", "Good news: I eat fish again now."))
    [proposal] = suggestions(app, h)
    assert (proposal["action"], proposal["target_instruction_id"]) == ("supersede", old["id"])
    accepted = app.client.post(f"/v1/users/alice/suggestions/{proposal['id']}/accept", headers=h)
    assert accepted.status_code == 200, accepted.text
    instruction = accepted.json()["instruction"]
    assert (instruction["id"], instruction["version"]) == (old["id"], 2)
    assert instruction["text"] == proposal["text"]
    assert instruction["source"] == "user"  # who first stated it; the capture is provenance
    assert instruction["capture_quote"] == proposal["quote"]
    history = app.client.get(f"/v1/users/alice/instructions/{old['id']}/history", headers=h)
    assert [v["text"] for v in history.json()["versions"]] == ["I'm vegetarian.", proposal["text"]]


def test_statements_repeated_in_one_conversation_are_suggested_once(api: tuple[Api, H]) -> None:
    app, h = api
    job = captured(
        app,
        h,
        ("user", "Please don't use emojis."),
        ("assistant", "Sure."),
        ("user", "please don't use emojis"),
    )
    [only] = suggestions(app, h)
    assert job["suggestions"] == [only["id"]]


def test_guarded_junk_is_not_suggested(api: tuple[Api, H]) -> None:
    app, h = api
    captured(
        app, h, ("user", "I always say: as an AI I love being a helpful assistant named SmolLM.")
    )
    assert suggestions(app, h) == []


def test_scope_isolation_and_deleting_the_user(api: tuple[Api, H]) -> None:
    app, h = api
    job = captured(app, h, ("user", "I prefer short answers."))
    [mine] = suggestions(app, h)
    other_tenant = app.tenant("other")
    app.user(other_tenant, "alice")
    app.user(h, "bob")
    for headers, user in ((other_tenant, "alice"), (h, "bob")):
        for method, path in (
            ("get", f"/v1/users/{user}/conversations/{job['id']}"),
            ("post", f"/v1/users/{user}/suggestions/{mine['id']}/accept"),
            ("post", f"/v1/users/{user}/suggestions/{mine['id']}/reject"),
        ):
            response = app.client.request(method, path, headers=headers)
            assert response.status_code == 404, (method, path, response.text)
        assert suggestions(app, headers, user=user) == []

    export = app.client.get("/v1/users/alice/export", headers=h).json()
    assert [s["id"] for s in export["suggestions"]] == [mine["id"]]
    assert "text_embedding" not in export["suggestions"][0]
    assert [c["id"] for c in export["captures"]] == [job["id"]]
    assert export["captures"][0]["user_messages"] == []  # dropped once read

    assert app.client.delete("/v1/users/alice", headers=h).status_code == 204
    app.user(h, "alice")
    assert suggestions(app, h) == []
    gone = app.client.get(f"/v1/users/alice/conversations/{job['id']}", headers=h)
    assert gone.status_code == 404


def test_submitting_is_idempotent_and_bounded(api: tuple[Api, H]) -> None:
    app, h = api
    body = {"messages": [{"role": "user", "content": "I prefer tea."}]}
    key = {**h, "Idempotency-Key": "k-1"}
    first = app.client.post("/v1/users/alice/conversations", json=body, headers=key)
    second = app.client.post("/v1/users/alice/conversations", json=body, headers=key)
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    too_long = {**body, "conversation_id": "c" * 201}
    response = app.client.post("/v1/users/alice/conversations", json=too_long, headers=h)
    assert response.status_code == 422
    empty = app.client.post("/v1/users/alice/conversations", json={"messages": []}, headers=h)
    assert empty.status_code == 422
    bad_status = app.client.get("/v1/users/alice/suggestions?status=maybe", headers=h)
    assert bad_status.status_code == 422
