"""Tenant and user isolation: another tenant's or user's object answers exactly like a
missing one, and a user-bound key touches only its own profile."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.conftest import Api


def _setup(api: Api) -> tuple[dict[str, str], dict[str, str], dict[str, object]]:
    a, b = api.tenant("a"), api.tenant("b")
    api.user(a, "alice")
    api.user(b, "mallory")
    item = api.instruction(a, "alice", text="I avoid gluten", always_on=True)
    return a, b, item


def test_other_tenant_cannot_see_change_or_delete(api: Api) -> None:
    a, b, item = _setup(api)
    c = api.client
    base = f"/v1/users/alice/instructions/{item['id']}"
    never_existed = c.get("/v1/users/nobody", headers=b)
    for response in [
        c.get("/v1/users/alice", headers=b),
        c.get("/v1/users/alice/instructions", headers=b),
        c.get(base, headers=b),
        c.get(f"{base}/history", headers=b),
        c.patch(base, json={"text": "pwned"}, headers=b),
        c.delete(base, headers=b),
        c.post("/v1/users/alice/instructions", json={"text": "pwned"}, headers=b),
        c.post(
            "/v1/users/alice/context",
            json={"messages": [{"role": "user", "content": "hi"}]},
            headers=b,
        ),
        c.delete("/v1/users/alice", headers=b),
    ]:
        assert response.status_code == 404, response.text
        assert response.json() == never_existed.json()
    # b's listing shows only its own user, and a's data is untouched
    assert [u["id"] for u in c.get("/v1/users", headers=b).json()["items"]] == ["mallory"]
    assert c.get(base, headers=a).json() == item
    assert api.context(a, "alice", "hi")["instructions"][0]["text"] == "I avoid gluten"


def test_same_external_id_in_two_tenants_are_different_users(api: Api) -> None:
    a, b, _ = _setup(api)
    api.user(b, "alice")
    api.instruction(b, "alice", text="B's alice likes verbose answers", always_on=True)
    ctx_a = api.context(a, "alice", "hi")
    ctx_b = api.context(b, "alice", "hi")
    assert [i["text"] for i in ctx_a["instructions"]] == ["I avoid gluten"]
    assert [i["text"] for i in ctx_b["instructions"]] == ["B's alice likes verbose answers"]


def test_user_bound_key_touches_only_its_user(api: Api) -> None:
    a, _, item = _setup(api)
    api.user(a, "bob")
    bob_item = api.instruction(a, "bob", text="Bob likes jokes", always_on=True)
    c = api.client
    issued = c.post("/v1/keys", json={"name": "alice phone", "user_id": "alice"}, headers=a)
    assert issued.status_code == 201
    assert issued.json()["user_id"] == "alice"
    k = {"Authorization": f"Bearer {issued.json()['key']}"}

    assert c.get("/v1/users/alice", headers=k).json()["id"] == "alice"
    assert c.get(f"/v1/users/alice/instructions/{item['id']}", headers=k).status_code == 200
    assert api.instruction(k, "alice", text="Short answers", source="user")["source"] == "user"
    # alice's always-on, then her small profile whole (reason whole_profile); never bob's
    got = [i["text"] for i in api.context(k, "alice", "hi")["instructions"]]
    assert got == ["I avoid gluten", "Short answers"]

    for response in [
        c.get("/v1/users/bob", headers=k),
        c.get(f"/v1/users/bob/instructions/{bob_item['id']}", headers=k),
        c.post("/v1/users/bob/instructions", json={"text": "x"}, headers=k),
        c.post(
            "/v1/users/bob/context",
            json={"messages": [{"role": "user", "content": "hi"}]},
            headers=k,
        ),
        c.delete("/v1/users/bob", headers=k),
    ]:
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "user_not_found"
    for response in [
        c.get("/v1/users", headers=k),
        c.post("/v1/users", json={"id": "eve"}, headers=k),
        c.get("/v1/keys", headers=k),
        c.post("/v1/keys", json={"name": "escalate"}, headers=k),
    ]:
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "user_bound_key"
    assert c.get(f"/v1/users/bob/instructions/{bob_item['id']}", headers=a).json() == bob_item


def test_revoked_and_expired_keys_stop_working(api: Api) -> None:
    a, _, _ = _setup(api)
    c = api.client
    key = c.post("/v1/keys", json={"name": "temp"}, headers=a).json()
    k = {"Authorization": f"Bearer {key['key']}"}
    assert c.get("/v1/users", headers=k).status_code == 200
    listed = {x["id"]: x for x in c.get("/v1/keys", headers=a).json()}
    assert "key" not in listed[key["id"]]
    assert listed[key["id"]]["last_used_at"] is not None
    assert c.delete(f"/v1/keys/{key['id']}", headers=a).status_code == 204
    assert c.get("/v1/users", headers=k).status_code == 401
    assert c.get("/v1/keys", headers=a).json()[-1]["revoked_at"] is not None

    past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    expired = c.post("/v1/keys", json={"name": "old", "expires_at": past}, headers=a).json()
    assert (
        c.get("/v1/users", headers={"Authorization": f"Bearer {expired['key']}"}).status_code == 401
    )
    naive = c.post("/v1/keys", json={"expires_at": "2030-01-01T00:00:00"}, headers=a)
    assert naive.status_code == 422
    assert naive.json()["error"]["code"] == "naive_datetime"


def test_key_of_another_tenant_cannot_be_revoked(api: Api) -> None:
    a, b, _ = _setup(api)
    key = api.client.post("/v1/keys", json={"name": "a2"}, headers=a).json()
    response = api.client.delete(f"/v1/keys/{key['id']}", headers=b)
    assert response.status_code == 404
    assert (
        api.client.get("/v1/users", headers={"Authorization": f"Bearer {key['key']}"}).status_code
        == 200
    )


def test_deleting_a_user_removes_their_bound_keys_and_data(api: Api) -> None:
    a, _, _ = _setup(api)
    c = api.client
    key = c.post("/v1/keys", json={"user_id": "alice"}, headers=a).json()
    assert c.delete("/v1/users/alice", headers=a).status_code == 204
    assert (
        c.get("/v1/users/alice", headers={"Authorization": f"Bearer {key['key']}"}).status_code
        == 401
    )
    api.user(a, "alice")  # a new user with the same id starts empty
    assert api.context(a, "alice", "hi")["instructions"] == []
