"""API behaviour through the real app, real SQLite and the real FAISS cache (the
embedder is the hashing fake; the real model has its own tests)."""

from __future__ import annotations

from typing import Any

import pytest

from service.schemas import MAX_MESSAGES
from tests.conftest import ADMIN_TOKEN, Api


def test_tenant_bootstrap_needs_the_admin_token(api: Api) -> None:
    c = api.client
    missing = c.post("/v1/tenants", json={"name": "x"})
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "invalid_admin_token"
    wrong = c.post("/v1/tenants", json={"name": "x"}, headers={"Authorization": "Bearer nope"})
    assert wrong.json()["error"]["code"] == "invalid_admin_token"
    ok = c.post(
        "/v1/tenants",
        json={"name": "notes-app"},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    body = ok.json()
    assert ok.status_code == 201
    assert body["tenant"]["name"] == "notes-app"
    assert body["api_key"]["key"].startswith("tlr_")
    assert body["api_key"]["prefix"] == body["api_key"]["key"][:12]
    assert body["api_key"]["user_id"] is None


def test_tenant_endpoint_disabled_without_admin_token(start_app: Any) -> None:
    api = start_app(admin_token=None)
    response = api.client.post("/v1/tenants", json={"name": "x"})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "admin_disabled"


def test_requests_without_a_valid_key_are_refused(api: Api) -> None:
    for headers in ({}, {"Authorization": "Bearer tlr_doesnotexist"}, {"Authorization": "Basic x"}):
        response = api.client.get("/v1/users", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_api_key"
        assert response.headers["www-authenticate"] == "Bearer"


def test_users_create_get_list_delete(api: Api) -> None:
    h = api.tenant()
    c = api.client
    created = c.post("/v1/users", json={"id": "alice@example.com"}, headers=h)
    assert created.status_code == 201
    assert created.json()["id"] == "alice@example.com"
    dup = c.post("/v1/users", json={"id": "alice@example.com"}, headers=h)
    assert dup.status_code == 409
    assert dup.json()["error"]["code"] == "user_exists"
    api.user(h, "bob")
    listing = c.get("/v1/users?limit=1", headers=h).json()
    assert listing["total"] == 2
    assert [u["id"] for u in listing["items"]] == ["alice@example.com"]
    assert c.get("/v1/users?limit=1&offset=1", headers=h).json()["items"][0]["id"] == "bob"
    assert c.get("/v1/users/bob", headers=h).json()["id"] == "bob"
    assert c.delete("/v1/users/bob", headers=h).status_code == 204
    gone = c.get("/v1/users/bob", headers=h)
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "user_not_found"
    assert c.get("/v1/users", headers=h).json()["total"] == 1


def test_instruction_lifecycle_keeps_history(api: Api) -> None:
    h = api.tenant()
    api.user(h, "alice")
    c = api.client
    made = api.instruction(
        h, "alice", text="Format plans as bullet points", applies_when="when I ask for a plan"
    )
    assert made["version"] == 1
    assert made["status"] == "active"
    assert made["source"] == "app"
    assert made["always_on"] is False
    base = f"/v1/users/alice/instructions/{made['id']}"
    assert c.get(base, headers=h).json() == made

    updated = c.patch(base, json={"text": "Use numbered lists for plans"}, headers=h).json()
    assert updated["id"] == made["id"]
    assert updated["version"] == 2
    assert updated["text"] == "Use numbered lists for plans"
    assert updated["applies_when"] == "when I ask for a plan"
    assert updated["created_at"] == made["created_at"]

    cleared = c.patch(base, json={"applies_when": "", "always_on": True}, headers=h).json()
    assert cleared["applies_when"] is None
    assert cleared["always_on"] is True
    assert cleared["version"] == 3

    assert c.delete(base, headers=h).status_code == 204
    assert c.get(base, headers=h).status_code == 404
    assert c.patch(base, json={"text": "again"}, headers=h).status_code == 404
    assert c.delete(base, headers=h).status_code == 404

    history = c.get(f"{base}/history", headers=h).json()
    versions = history["versions"]
    assert [v["version"] for v in versions] == [1, 2, 3]
    assert [v["status"] for v in versions] == ["active", "active", "deleted"]
    assert versions[0]["superseded_by"] == versions[1]["version_id"]
    assert versions[1]["superseded_by"] == versions[2]["version_id"]
    assert versions[0]["valid_to"] == versions[1]["valid_from"]
    assert versions[2]["valid_to"] is not None
    assert versions[2]["superseded_by"] is None
    assert versions[0]["text"] == "Format plans as bullet points"


def test_list_filters_and_disabled_instructions_do_not_apply(api: Api) -> None:
    h = api.tenant()
    api.user(h, "alice")
    keep = api.instruction(h, "alice", text="Always answer in French", always_on=True)
    off = api.instruction(h, "alice", text="Mention the weather", always_on=True)
    c = api.client
    c.patch(f"/v1/users/alice/instructions/{off['id']}", json={"status": "disabled"}, headers=h)
    all_items = c.get(INSTR, headers=h).json()
    assert all_items["total"] == 2
    active = c.get("/v1/users/alice/instructions?status=active", headers=h).json()
    assert [i["id"] for i in active["items"]] == [keep["id"]]
    disabled = c.get("/v1/users/alice/instructions?status=disabled", headers=h).json()
    assert [i["id"] for i in disabled["items"]] == [off["id"]]
    ctx = api.context(h, "alice", "hello there")
    assert [i["id"] for i in ctx["instructions"]] == [keep["id"]]


def test_context_selects_always_on_and_matching_with_reasons(api: Api) -> None:
    h = api.tenant()
    api.user(h, "alice")
    gluten = api.instruction(h, "alice", text="I avoid gluten", always_on=True, source="user")
    plans = api.instruction(
        h, "alice", text="Use bullet points", applies_when="when I ask for a travel plan"
    )
    cite = api.instruction(
        h, "alice", text="Cite sources for medical claims", applies_when="health"
    )
    # Ranked against the floor (as a profile that does not fit whole is):
    ctx = api.context(
        h, "alice", "Can you make a travel plan for Rome?", threshold=0.35, whole_profile=False
    )
    got = {i["id"]: i for i in ctx["instructions"]}
    assert list(got) == [gluten["id"], plans["id"]]
    assert got[gluten["id"]]["reason"] == "always_on"
    assert got[gluten["id"]]["score"] == 1.0
    assert got[plans["id"]]["reason"] == "matched_condition"
    assert got[plans["id"]]["score"] >= 0.35
    assert ctx["omitted"] == []  # below the floor is not relevant, not cut
    # By default a profile this small goes in whole; what did not match says so.
    whole = api.context(h, "alice", "Can you make a travel plan for Rome?", threshold=0.35)
    reasons = {i["id"]: i["reason"] for i in whole["instructions"]}
    assert reasons == {
        gluten["id"]: "always_on",
        plans["id"]: "matched_condition",
        cite["id"]: "whole_profile",
    }
    assert [i["id"] for i in whole["instructions"]][:2] == [gluten["id"], plans["id"]]
    content = ctx["system_message"]["content"]
    assert ctx["system_message"]["role"] == "system"
    assert '"text": "I avoid gluten"' in content
    assert '"text": "Use bullet points"' in content
    assert "Cite sources" not in content
    assert ctx["token_estimate"] > 0
    assert ctx["embedder"] == {"model": "test/hashing-v1", "dim": 64}
    assert ctx["user_id"] == "alice"


def test_context_uses_the_last_user_message_and_openai_content_parts(api: Api) -> None:
    h = api.tenant()
    api.user(h, "alice")
    plans = api.instruction(h, "alice", text="Bullet points", applies_when="travel plan")
    messages = [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "What is the capital of Peru?"},
        {"role": "assistant", "content": "Lima."},
        {"role": "user", "content": [{"type": "text", "text": "Now a travel plan for Lima"}]},
    ]
    response = api.client.post(CTX, json={"messages": messages}, headers=h)
    assert [i["id"] for i in response.json()["instructions"]] == [plans["id"]]


def test_context_without_matches_has_no_system_message(api: Api) -> None:
    h = api.tenant()
    api.user(h, "alice")
    made = api.instruction(h, "alice", text="Bullet points", applies_when="travel plan")
    ctx = api.context(h, "alice", "zebra quantum", whole_profile=False)
    assert ctx["instructions"] == []
    assert ctx["system_message"] is None
    assert ctx["token_estimate"] == 0
    # The default never starves a small profile: it goes in whole, and says why.
    whole = api.context(h, "alice", "zebra quantum")
    assert [(i["id"], i["reason"]) for i in whole["instructions"]] == [
        (made["id"], "whole_profile")
    ]
    assert '"text": "Bullet points"' in whole["system_message"]["content"]


def test_context_top_k_and_token_budget_are_reported(api: Api) -> None:
    h = api.tenant()
    api.user(h, "alice")
    made = [
        api.instruction(h, "alice", text=f"recipe rule {i} " + "x" * 200, applies_when="recipe")
        for i in range(4)
    ]
    ctx = api.context(h, "alice", "recipe", top_k=2, threshold=0.1)
    assert len(ctx["instructions"]) == 2
    assert sorted(o["reason"] for o in ctx["omitted"]) == ["top_k", "top_k"]
    small = api.context(h, "alice", "recipe", top_k=4, threshold=0.1, token_budget=100)
    assert len(small["instructions"]) == 1
    assert small["token_estimate"] <= 100
    assert {o["reason"] for o in small["omitted"]} == {"token_budget"}
    assert {o["id"] for o in small["omitted"]} | {small["instructions"][0]["id"]} == {
        m["id"] for m in made
    }


def test_context_embeds_the_query_once(start_app: Any) -> None:
    from tests.fakes import HashingEmbedder

    embedder = HashingEmbedder()
    api = start_app(embedder=embedder)
    h = api.tenant()
    api.user(h, "alice")
    for i in range(5):
        api.instruction(h, "alice", text=f"rule {i}", applies_when=f"topic {i}")
    before = embedder.calls
    api.context(h, "alice", "topic 3")
    assert embedder.calls - before == 1


USER = [{"role": "user", "content": "x"}]
INSTR = "/v1/users/alice/instructions"
CTX = "/v1/users/alice/context"


@pytest.mark.parametrize(
    ("path", "body", "code"),
    [
        ("/v1/users", {"id": ""}, "invalid_request"),
        ("/v1/users", {"id": "has space"}, "invalid_request"),
        ("/v1/users", {"id": "x" * 129}, "invalid_request"),
        ("/v1/users", {"id": "ok", "extra": 1}, "invalid_request"),
        (INSTR, {"text": ""}, "invalid_request"),
        (INSTR, {"text": "   "}, "invalid_request"),
        (INSTR, {"text": "x" * 1001}, "invalid_request"),
        (INSTR, {"text": "a\u202eb"}, "invalid_request"),
        (INSTR, {"text": "ok", "unknown": True}, "invalid_request"),
        (INSTR, {"text": "ok", "applies_when": "y" * 501}, "invalid_request"),
        (CTX, {"messages": []}, "invalid_request"),
        (CTX, {"messages": USER, "top_k": 0}, "invalid_request"),
        (CTX, {"messages": USER, "top_k": 51}, "invalid_request"),
        (CTX, {"messages": [{"role": "robot", "content": "x"}]}, "invalid_request"),
        (CTX, {"messages": [{"role": "assistant", "content": "x"}]}, "no_user_message"),
        (CTX, {"messages": USER * (MAX_MESSAGES + 1)}, "invalid_request"),
    ],
)
def test_bad_input_gets_a_clear_422_and_writes_nothing(
    api: Api, path: str, body: dict[str, Any], code: str
) -> None:
    h = api.tenant()
    api.user(h, "alice")
    response = api.client.post(path, json=body, headers=h)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert "Traceback" not in response.text
    assert api.client.get("/v1/users", headers=h).json()["total"] == 1
    assert api.client.get(INSTR, headers=h).json()["total"] == 0


def test_bad_ids_and_malformed_json(api: Api) -> None:
    h = api.tenant()
    api.user(h, "alice")
    c = api.client
    bad_uuid = c.get("/v1/users/alice/instructions/not-a-uuid", headers=h)
    assert bad_uuid.status_code == 422
    assert bad_uuid.json()["error"]["details"][0]["loc"] == ["path", "instruction_id"]
    bad_user = c.get("/v1/users/%20bad", headers=h)
    assert bad_user.status_code == 422
    missing = c.get("/v1/users/alice/instructions/00000000-0000-4000-8000-000000000000", headers=h)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "instruction_not_found"
    garbled = c.post(
        "/v1/users", content=b'{"id": ', headers={**h, "Content-Type": "application/json"}
    )
    assert garbled.status_code == 422
    assert garbled.json()["error"]["code"] == "invalid_request"
    assert c.get("/v1/nothing-here", headers=h).json()["error"]["code"] == "not_found"
    assert c.put("/v1/users", headers=h).json()["error"]["code"] == "method_not_allowed"


def test_oversized_body_is_413_before_parsing(start_app: Any) -> None:
    api = start_app(max_body_bytes=4096)
    h = api.tenant()
    api.user(h, "alice")
    big = {"text": "a" * 5000}
    response = api.client.post(INSTR, json=big, headers=h)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"

    def chunks():  # no Content-Length: the streamed size is counted
        for _ in range(10):
            yield b"x" * 1000

    streamed = api.client.post(
        "/v1/users/alice/instructions",
        content=chunks(),
        headers={**h, "Content-Type": "application/json"},
    )
    assert streamed.status_code == 413
    assert api.client.get(INSTR, headers=h).json()["total"] == 0


def test_openapi_documents_every_route_with_bounds(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    paths = spec["paths"]
    for path in [
        "/v1/users",
        "/v1/users/{user_id}",
        "/v1/users/{user_id}/instructions",
        "/v1/users/{user_id}/instructions/{instruction_id}",
        "/v1/users/{user_id}/instructions/{instruction_id}/history",
        "/v1/users/{user_id}/context",
        "/v1/keys",
        "/v1/tenants",
        "/healthz",
        "/readyz",
    ]:
        assert path in paths, path
    context_schema = spec["components"]["schemas"]["ContextRequest"]
    assert context_schema["properties"]["messages"]["maxItems"] == MAX_MESSAGES == 1000
    assert context_schema["examples"]
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_405_lists_every_method_of_the_path(api: Api) -> None:
    h = api.tenant()
    response = api.client.put("/v1/keys", headers=h)
    assert response.status_code == 405
    assert set(response.headers["allow"].split(", ")) >= {"GET", "POST"}


def test_undecodable_body_is_a_clear_400(api: Api) -> None:
    h = api.tenant()
    response = api.client.post(
        "/v1/users",
        content=b'{"id": "\xff\xfe"}',
        headers={**h, "Content-Type": "application/json"},
    )
    assert response.status_code in (400, 422)
    assert response.json()["error"]["code"] in {"malformed_body", "invalid_request"}


def test_unknown_query_parameters_are_rejected(api: Api) -> None:
    h = api.tenant()
    response = api.client.get("/v1/users?limt=5", headers=h)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "unknown_query_parameter"
    assert "'limt'" in response.json()["error"]["message"]
    assert api.client.get("/v1/users?limit=5", headers=h).status_code == 200
