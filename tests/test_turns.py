"""The record of recent turns ("why did the assistant do that"), over HTTP, on SQLite and
PostgreSQL: what a turn used and why, no message text unless opted in, bounded per
user, scoped like everything else, exported, and deleted with the user."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, select

from store.models import TurnRecord
from tests.conftest import Api


def _turn_rows(api: Api) -> list[TurnRecord]:
    engine = api.client.app.state.ports.engine  # type: ignore[attr-defined]
    with Session(engine) as session:
        return list(session.exec(select(TurnRecord)).all())


def _chat(api: Api, h: dict[str, str], user: str, text: str) -> Any:
    response = api.client.post(
        "/v1/chat/completions",
        json={"user": user, "messages": [{"role": "user", "content": text}]},
        headers=h,
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_a_turn_records_the_items_it_used_and_why(api: Api) -> None:
    h = api.tenant()
    api.user(h, "alice")
    always = api.instruction(h, "alice", text="I avoid gluten.", always_on=True)
    plan = api.instruction(h, "alice", text="Use bullet points.", applies_when="plan a trip")
    example = api.client.post(
        "/v1/users/alice/examples",
        json={"prompt": "plan a trip to Rome", "chosen": "- day 1", "rejected": "Well..."},
        headers=h,
    ).json()
    ctx = api.context(h, "alice", "plan a trip to Rome for me", whole_profile=False)
    turns = api.client.get("/v1/users/alice/turns", headers=h).json()
    assert turns["kept"] == 50
    [turn] = turns["items"]
    assert turn["endpoint"] == "context"
    assert turn["message"] is None
    used = {(i["kind"], i["id"]): i for i in turn["items"]}
    for applied in ctx["instructions"]:
        item = used[("standing_instruction", applied["id"])]
        assert (item["version"], item["reason"], item["score"]) == (
            applied["version"],
            applied["reason"],
            applied["score"],
        )
    assert used[("standing_instruction", always["id"])]["reason"] == "always_on"
    assert ("standing_instruction", plan["id"]) in used
    assert used[("preference_example", example["id"])]["reason"] == "nearest_prompt"
    assert len(used) == len(ctx["instructions"]) + len(ctx["examples"])
    # No message text anywhere in the stored record.
    for row in _turn_rows(api):
        assert row.message is None
        assert "Rome" not in repr(row.items)

    # A chat turn is recorded too, with what its response said it used; newest first.
    answer = _chat(api, h, "alice", "plan a trip to Paris")
    turns = api.client.get("/v1/users/alice/turns", headers=h).json()["items"]
    assert [t["endpoint"] for t in turns] == ["chat", "context"]
    assert turns[0]["items"] == answer["tailor"]["profile_items"]


def test_turns_are_bounded_per_user_and_can_be_off(start_app: Any) -> None:
    api = start_app(turns_kept=3)
    h = api.tenant()
    api.user(h, "alice")
    api.user(h, "bob")
    api.instruction(h, "alice", text="Be brief.", always_on=True)
    api.context(h, "bob", "hello")
    for n in range(5):
        api.context(h, "alice", f"question {n}")
    turns = api.client.get("/v1/users/alice/turns", headers=h).json()
    assert turns["kept"] == 3
    assert len(turns["items"]) == 3
    assert len(api.client.get("/v1/users/bob/turns", headers=h).json()["items"]) == 1
    assert len(_turn_rows(api)) == 4  # alice's prune left bob's record alone
    limited = api.client.get("/v1/users/alice/turns?limit=2", headers=h).json()["items"]
    assert [t["id"] for t in limited] == [t["id"] for t in turns["items"][:2]]
    assert api.client.get("/v1/users/alice/turns?limit=0", headers=h).status_code == 422


def test_recording_off(start_app: Any) -> None:
    api = start_app(turns_kept=0)
    h = api.tenant()
    api.user(h, "alice")
    api.context(h, "alice", "hello")
    assert api.client.get("/v1/users/alice/turns", headers=h).json() == {"items": [], "kept": 0}
    assert _turn_rows(api) == []


def test_the_message_is_kept_only_when_the_operator_opts_in(start_app: Any) -> None:
    api = start_app(turns_keep_message=True)
    h = api.tenant()
    api.user(h, "alice")
    long = "plan " + "x" * 600
    api.client.post(
        "/v1/users/alice/context",
        json={
            "messages": [
                {"role": "user", "content": "an earlier question"},
                {"role": "assistant", "content": "an answer"},
                {"role": "user", "content": long},
            ]
        },
        headers=h,
    )
    [turn] = api.client.get("/v1/users/alice/turns", headers=h).json()["items"]
    assert turn["message"] == long[:499] + "…"
    assert len(turn["message"]) == 500


def test_turns_are_scoped_exported_and_deleted_with_the_user(api: Api) -> None:
    h = api.tenant()
    other = api.tenant("other")
    for user in ("alice", "bob"):
        api.user(h, user)
        api.instruction(h, user, text=f"{user} likes tea.", always_on=True)
        api.context(h, user, "hello")
    api.user(other, "alice")
    # Another tenant's user of the same name sees none of them.
    assert api.client.get("/v1/users/alice/turns", headers=other).json()["items"] == []
    # A user-bound key (a profile-page session) reads its own user's turns only.
    bob_key = api.client.post("/v1/keys", json={"user_id": "bob"}, headers=h).json()["key"]
    bob = {"Authorization": f"Bearer {bob_key}"}
    assert len(api.client.get("/v1/users/bob/turns", headers=bob).json()["items"]) == 1
    denied = api.client.get("/v1/users/alice/turns", headers=bob)
    assert denied.status_code == 404
    # The export carries the user's turns, and only theirs.
    alice_turns = api.client.get("/v1/users/alice/turns", headers=h).json()["items"]
    exported = api.client.get("/v1/users/alice/export", headers=h).json()
    assert [t["id"] for t in exported["turns"]] == [t["id"] for t in alice_turns]
    assert exported["turns"][0]["items"] == alice_turns[0]["items"]
    # Deleting the user deletes their turns (and no one else's).
    assert api.client.delete("/v1/users/alice", headers=h).status_code == 204
    engine = api.client.app.state.ports.engine  # type: ignore[attr-defined]
    with Session(engine) as session:
        count = session.exec(sa.select(sa.func.count()).select_from(TurnRecord)).one()
    assert count[0] == 1
    assert {str(r.id) for r in _turn_rows(api)} == {
        t["id"] for t in api.client.get("/v1/users/bob/turns", headers=h).json()["items"]
    }
