"""TAILOR_CREATE_USERS_ON_CHAT: off by default (an unknown user is 404 user_not_found);
on, a chat turn or a /context call creates the user, and two first turns at once settle
on one row through the database's unique constraint."""

from __future__ import annotations

import threading
from typing import Any

from store.scope import TenantScope, UserScope
from tests.conftest import Api

HI = [{"role": "user", "content": "hi"}]


def _chat(api: Api, h: dict[str, str], user: str) -> Any:
    return api.client.post("/v1/chat/completions", json={"user": user, "messages": HI}, headers=h)


def test_off_by_default_unknown_users_are_404(start_app: Any) -> None:
    api = start_app()
    h = api.tenant()
    for response in (
        _chat(api, h, "newbie"),
        api.client.post("/v1/users/newbie/context", json={"messages": HI}, headers=h),
    ):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "user_not_found"
    assert api.client.get("/v1/users/newbie", headers=h).status_code == 404


def test_on_a_first_turn_creates_the_user(start_app: Any) -> None:
    api = start_app(create_users_on_chat=True)
    h = api.tenant()
    first = _chat(api, h, "newbie")
    assert first.status_code == 200, first.text
    assert first.json()["tailor"]["user_id"] == "newbie"
    assert _chat(api, h, "newbie").status_code == 200  # the second turn finds it
    assert api.client.get("/v1/users/newbie", headers=h).json()["id"] == "newbie"

    context = api.client.post("/v1/users/ctx-user/context", json={"messages": HI}, headers=h)
    assert context.status_code == 200, context.text
    assert context.json()["user_id"] == "ctx-user"
    listed = api.client.get("/v1/users", headers=h).json()
    assert sorted(u["id"] for u in listed["items"]) == ["ctx-user", "newbie"]


def test_a_user_bound_key_creates_no_one(start_app: Any) -> None:
    api = start_app(create_users_on_chat=True)
    h = api.tenant()
    api.user(h, "alice")
    key = api.client.post("/v1/keys", json={"user_id": "alice"}, headers=h).json()["key"]
    bound = {"Authorization": f"Bearer {key}"}
    response = _chat(api, bound, "mallory")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "user_not_found"
    assert api.client.get("/v1/users/mallory", headers=h).status_code == 404


def test_two_first_turns_at_once_make_one_user(start_app: Any) -> None:
    api = start_app(create_users_on_chat=True)
    h = api.tenant()
    ports = api.client.app.state.ports  # type: ignore[attr-defined]
    scope: TenantScope = ports.keys.authenticate(h["Authorization"].removeprefix("Bearer "))
    barrier = threading.Barrier(4)
    got: list[UserScope] = []

    def first_turn() -> None:
        barrier.wait()
        got.append(ports.users.resolve_or_create(scope, "racer"))

    threads = [threading.Thread(target=first_turn) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(got) == 4
    assert len({g.user_id for g in got}) == 1
    assert ports.users.resolve(scope, "racer").user_id == got[0].user_id
    assert api.client.get("/v1/users", headers=h).json()["total"] == 1
