"""Profile-page sessions: what the short-lived user-bound token can and cannot do, each
claim checked through the real app and store (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from store.clock import utcnow
from tests.conftest import Api


def _session(api: Api, headers: dict[str, str], user: str) -> dict[str, Any]:
    response = api.client.post(f"/v1/users/{user}/sessions", headers=headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _bearer(session: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {session['token']}"}


def _two_users(api: Api) -> dict[str, str]:
    h = api.tenant()
    api.user(h, "alice")
    api.user(h, "bob")
    api.instruction(h, "alice", text="I avoid gluten", always_on=True)
    api.instruction(h, "bob", text="Bob likes long answers", always_on=True)
    return h


def test_session_link_carries_a_token_bound_to_the_user(api: Api) -> None:
    h = _two_users(api)
    before = utcnow()
    session = _session(api, h, "alice")
    after = utcnow()
    assert session["token"].startswith("tlr_")
    expires = datetime.fromisoformat(session["expires_at"])
    assert before + timedelta(seconds=1800) <= expires <= after + timedelta(seconds=1800)
    url = urlsplit(session["url"])
    assert (url.scheme, url.netloc, url.path, url.query) == ("http", "127.0.0.1:8000", "/ui/", "")
    fragment = parse_qs(url.fragment)
    assert fragment == {
        "user": ["alice"],
        "session": [session["id"]],
        "token": [session["token"]],
    }
    listing = api.client.get("/v1/keys", headers=h).json()
    key = next(k for k in listing if k["id"] == session["id"])
    assert key["user_id"] == "alice"
    assert key["name"] == "profile-session"
    texts = [
        i["text"]
        for i in api.client.get("/v1/users/alice/instructions", headers=_bearer(session)).json()[
            "items"
        ]
    ]
    assert texts == ["I avoid gluten"]


def test_session_token_cannot_reach_other_users_or_tenant_routes(api: Api) -> None:
    h = _two_users(api)
    s = _bearer(_session(api, h, "alice"))
    c = api.client
    for method, path in [
        ("GET", "/v1/users/bob"),
        ("GET", "/v1/users/bob/instructions"),
        ("GET", "/v1/users/bob/export"),
        ("GET", "/v1/users/bob/preferences"),
        ("DELETE", "/v1/users/bob"),
        ("POST", "/v1/users/bob/sessions"),
    ]:
        response = c.request(method, path, headers=s)
        assert response.status_code in (403, 404), (method, path, response.text)
        assert response.json()["error"]["code"] in ("user_not_found", "user_bound_key")
    assert c.get("/v1/users/bob", headers=h).status_code == 200
    assert c.get("/v1/users/bob/instructions", headers=h).json()["total"] == 1
    for method, path, body in [
        ("GET", "/v1/users", None),
        ("POST", "/v1/users", {"id": "mallory"}),
        ("GET", "/v1/keys", None),
        ("POST", "/v1/keys", {"name": "escalate"}),
        ("POST", "/v1/keys", {"name": "escalate", "user_id": "alice"}),
        ("POST", "/v1/users/alice/sessions", None),
    ]:
        response = c.request(method, path, headers=s, json=body)
        assert response.status_code == 403, (method, path, response.text)
        assert response.json()["error"]["code"] == "user_bound_key"
    assert [k["name"] for k in c.get("/v1/keys", headers=h).json()] == [
        "bootstrap",
        "profile-session",
    ]


def test_session_may_export_and_delete_its_own_user_only(api: Api) -> None:
    h = _two_users(api)
    alice = _bearer(_session(api, h, "alice"))
    bob = _bearer(_session(api, h, "bob"))
    c = api.client
    export = c.get("/v1/users/alice/export", headers=alice)
    assert export.status_code == 200
    assert "I avoid gluten" in export.text
    assert "Bob likes long answers" not in export.text
    refused = c.delete("/v1/users/alice", headers=bob)
    assert refused.status_code == 404
    assert refused.json()["error"]["code"] == "user_not_found"
    assert c.get("/v1/users/alice/instructions", headers=h).json()["total"] == 1
    assert c.delete("/v1/users/alice", headers=alice).status_code == 204
    assert c.get("/v1/users/alice", headers=h).status_code == 404
    assert c.get("/v1/users/bob/instructions", headers=bob).json()["total"] == 1


def test_session_expires(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    h = _two_users(api)
    session = _session(api, h, "alice")
    expires = datetime.fromisoformat(session["expires_at"])
    monkeypatch.setattr("store.keys.utcnow", lambda: expires - timedelta(seconds=1))
    assert api.client.get("/v1/users/alice", headers=_bearer(session)).status_code == 200
    monkeypatch.setattr("store.keys.utcnow", lambda: expires)
    late = api.client.get("/v1/users/alice", headers=_bearer(session))
    assert late.status_code == 401
    assert late.json()["error"]["code"] == "invalid_api_key"


def test_app_ends_a_session_and_only_sessions(api: Api) -> None:
    h = _two_users(api)
    c = api.client
    session = _session(api, h, "alice")
    wrong_user = c.delete(f"/v1/users/bob/sessions/{session['id']}", headers=h)
    assert wrong_user.status_code == 404
    assert wrong_user.json()["error"]["code"] == "session_not_found"
    assert c.get("/v1/users/alice", headers=_bearer(session)).status_code == 200
    assert c.delete(f"/v1/users/alice/sessions/{session['id']}", headers=h).status_code == 204
    assert c.get("/v1/users/alice", headers=_bearer(session)).status_code == 401
    # A long-lived user-bound key (a mobile app's) is not a session: not ended here.
    mobile = c.post("/v1/keys", json={"name": "mobile", "user_id": "alice"}, headers=h).json()
    not_session = c.delete(f"/v1/users/alice/sessions/{mobile['id']}", headers=h)
    assert not_session.status_code == 404
    assert c.get("/v1/users/alice", headers={"Authorization": f"Bearer {mobile['key']}"}).is_success


def test_a_session_signs_out_itself_but_no_other(api: Api) -> None:
    h = _two_users(api)
    c = api.client
    first, second = _session(api, h, "alice"), _session(api, h, "alice")
    other = c.delete(f"/v1/users/alice/sessions/{second['id']}", headers=_bearer(first))
    assert other.status_code == 404
    assert c.get("/v1/users/alice", headers=_bearer(second)).status_code == 200
    own = c.delete(f"/v1/users/alice/sessions/{first['id']}", headers=_bearer(first))
    assert own.status_code == 204
    assert c.get("/v1/users/alice", headers=_bearer(first)).status_code == 401
    assert c.get("/v1/users/alice", headers=_bearer(second)).status_code == 200


def test_session_for_a_missing_user_is_404(api: Api) -> None:
    h = api.tenant()
    response = api.client.post("/v1/users/nobody/sessions", headers=h)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "user_not_found"


def test_session_url_and_lifetime_follow_the_settings(start_app: Any) -> None:
    api = start_app(public_url="https://tailor.example/base/", session_ttl_s=120)
    h = api.tenant()
    api.user(h, "carol@example.com")
    before = utcnow()
    session = _session(api, h, "carol@example.com")
    assert session["url"].startswith("https://tailor.example/base/ui/#user=carol%40example.com&")
    expires = datetime.fromisoformat(session["expires_at"])
    assert before + timedelta(seconds=120) <= expires <= utcnow() + timedelta(seconds=120)


def test_cli_link_prints_a_working_link(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tailor bootstrap` then `tailor link --user` on a fresh data folder: the printed
    URL's token reads that user's profile through the app, and only theirs."""
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.cli import main
    from tests.conftest import make_settings, wait_ready
    from tests.fakes import HashingEmbedder, RecordingBackend

    monkeypatch.setenv("TAILOR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TAILOR_PORT", "8123")
    assert main(["link", "--user", "demo"]) == 2
    assert "run `tailor bootstrap`" in capsys.readouterr().err
    assert main(["bootstrap", "--name", "cli-app"]) == 0
    capsys.readouterr()
    assert main(["link", "--user", "demo", "--tenant", "not-a-uuid"]) == 2
    capsys.readouterr()
    assert main(["link", "--user", "demo"]) == 0
    out, err = capsys.readouterr()
    assert "created user 'demo'" in err
    url = urlsplit(out.strip())
    assert (url.netloc, url.path) == ("127.0.0.1:8123", "/ui/")
    token = parse_qs(url.fragment)["token"][0]
    settings = make_settings(tmp_path / "data")
    with TestClient(
        create_app(settings, embedder=HashingEmbedder(), backend=RecordingBackend())
    ) as client:
        wait_ready(client)
        headers = {"Authorization": f"Bearer {token}"}
        assert client.get("/v1/users/demo", headers=headers).json()["id"] == "demo"
        assert client.get("/v1/users", headers=headers).status_code == 403
    assert main(["link", "--user", "demo"]) == 0
    assert "created user" not in capsys.readouterr().err
