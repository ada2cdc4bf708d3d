"""CIPHER through the API: edits are queued and inferred in the background, the k
nearest edit contexts' preferences are aggregated into the next turn's profile, and
the user reviews what was learned. The model is a rule-based fake (tests/fakes.py);
tests/test_cipher_real.py runs the embedded model."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.conftest import Api
from tests.fakes import RuleBackend

LONG = (
    "Dear team, I wanted to let you know that the weekly meeting has been moved to "
    "Thursday afternoon."
)
SHORT = "Meeting moved to Thursday."


def post_edit(api: Api, h: dict[str, str], user: str = "alice", **body: Any) -> dict[str, Any]:
    payload = {"context": "tell the team the meeting moved", "draft": LONG, "edited": SHORT, **body}
    response = api.client.post(f"/v1/users/{user}/edits", json=payload, headers=h)
    assert response.status_code == 202, response.text
    created: dict[str, Any] = response.json()
    return created


def wait_edit(
    api: Api, h: dict[str, str], edit_id: str, user: str = "alice", timeout: float = 15
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        edit: dict[str, Any] = api.client.get(f"/v1/users/{user}/edits/{edit_id}", headers=h).json()
        if edit["inference_status"] in {"done", "failed", "skipped"}:
            return edit
        time.sleep(0.05)
    raise AssertionError(f"edit still {edit['inference_status']}")


@pytest.fixture
def cipher(start_app: Any) -> tuple[Api, dict[str, str], RuleBackend]:
    backend = RuleBackend()
    api = start_app(backend=backend, edit_retry_backoff_s=0.01)
    h = api.tenant()
    api.user(h, "alice")
    return api, h, backend


def test_edit_returns_at_once_then_a_suggestion_appears(cipher: Any) -> None:
    api, h, _ = cipher
    created = post_edit(api, h, task="email")
    assert created["inference_status"] in {"pending", "running", "done"}
    assert created["distance"] > 0.5
    assert created["task"] == "email"
    edit = wait_edit(api, h, created["id"])
    assert edit["inference_status"] == "done"
    assert edit["attempts"] == 1
    pref = api.client.get(f"/v1/users/alice/preferences/{edit['preference_id']}", headers=h).json()
    assert pref["text"] == "Prefers shorter text."  # quotes and labels are stripped
    assert pref["status"] == "suggested"
    assert pref["source_edit_id"] == edit["id"]


def test_trivial_edit_infers_nothing_but_keeps_the_applied_preference(cipher: Any) -> None:
    api, h, backend = cipher
    untouched = post_edit(api, h, draft=SHORT, edited=SHORT)
    assert untouched["inference_status"] == "skipped"
    assert untouched["distance"] == 0.0
    assert untouched["preference_id"] is None
    kept = post_edit(api, h, draft=SHORT, edited=SHORT, applied_preference="be brief")
    assert kept["inference_status"] == "skipped"
    pref = api.client.get(f"/v1/users/alice/preferences/{kept['preference_id']}", headers=h).json()
    assert (pref["text"], pref["status"]) == ("be brief", "accepted")
    assert backend.calls == 0


def test_next_turn_gets_the_aggregated_preference(cipher: Any) -> None:
    api, h, backend = cipher
    wait_edit(api, h, post_edit(api, h)["id"])
    ctx = api.context(h, "alice", "tell the team the meeting moved")
    inferred = ctx["inferred_preference"]
    assert inferred["text"] == "Prefers shorter text."
    assert inferred["aggregated_by_model"] is False  # one preference: nothing to combine
    assert '"type": "inferred_preference"' in ctx["system_message"]["content"]

    wait_edit(api, h, post_edit(api, h, draft=SHORT, edited=LONG)["id"])
    calls = backend.calls
    first = api.context(h, "alice", "tell the team the meeting moved")["inferred_preference"]
    assert first["text"] == "combined: Prefers shorter text + longer text"
    assert first["aggregated_by_model"] is True
    assert len(first["edit_ids"]) == 2
    assert backend.calls == calls + 1
    again = api.context(h, "alice", "tell the team the meeting moved")["inferred_preference"]
    assert again == first
    assert backend.calls == calls + 1  # cached by the set of preference versions
    assert api.context(h, "alice", "x", cipher_k=0)["inferred_preference"] is None


def test_k_nearest_contexts_only(cipher: Any) -> None:
    api, h, _ = cipher
    far = post_edit(api, h, context="recipe for lasagne with spinach")
    near = post_edit(api, h, context="tell the team the meeting moved", draft=SHORT, edited=LONG)
    wait_edit(api, h, far["id"])
    wait_edit(api, h, near["id"])
    ctx = api.context(h, "alice", "tell the team the meeting moved", cipher_k=1)
    assert ctx["inferred_preference"]["edit_ids"] == [near["id"]]
    assert ctx["inferred_preference"]["text"] == "longer text"


def test_review_reject_reword_promote_and_history(cipher: Any) -> None:
    api, h, _ = cipher
    edit = wait_edit(api, h, post_edit(api, h)["id"])
    pid = edit["preference_id"]
    c = api.client
    base = f"/v1/users/alice/preferences/{pid}"
    reworded = c.patch(
        base, json={"text": "Keep team notes to one line", "status": "accepted"}, headers=h
    ).json()
    assert (reworded["version"], reworded["status"]) == (2, "accepted")
    turn = "tell the team the meeting moved"
    assert (
        api.context(h, "alice", turn)["inferred_preference"]["text"]
        == "Keep team notes to one line"
    )

    assert c.patch(base, json={"status": "rejected"}, headers=h).json()["status"] == "rejected"
    assert api.context(h, "alice", turn)["inferred_preference"] is None
    refused = c.post(f"{base}/promote", json={}, headers=h)
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "preference_not_promotable"

    c.patch(base, json={"status": "accepted"}, headers=h)
    promoted = c.post(f"{base}/promote", json={"always_on": True}, headers=h).json()
    assert promoted["preference"]["status"] == "promoted"
    assert promoted["instruction"]["text"] == "Keep team notes to one line"
    assert promoted["instruction"]["source"] == "inferred"
    assert promoted["preference"]["promoted_instruction_id"] == promoted["instruction"]["id"]
    ctx = api.context(h, "alice", turn)
    assert ctx["inferred_preference"] is None  # not said twice
    assert [i["id"] for i in ctx["instructions"]] == [promoted["instruction"]["id"]]

    history = c.get(f"{base}/history", headers=h).json()["versions"]
    assert [v["status"] for v in history] == [
        "suggested",
        "accepted",
        "rejected",
        "accepted",
        "promoted",
    ]
    assert history[0]["superseded_by"] == history[1]["version_id"]
    assert c.get("/v1/users/alice/preferences?status=promoted", headers=h).json()["total"] == 1


def test_failed_calls_are_retried_then_given_up(start_app: Any) -> None:
    backend = RuleBackend(fail_first=2)
    api = start_app(backend=backend, edit_retry_backoff_s=0.01, edit_max_attempts=3)
    h = api.tenant()
    api.user(h, "alice")
    edit = wait_edit(api, h, post_edit(api, h)["id"])
    assert (edit["inference_status"], edit["attempts"]) == ("done", 3)
    assert edit["last_error"] is None

    backend.fail_first = backend.calls + 10
    failed = wait_edit(api, h, post_edit(api, h)["id"])
    assert (failed["inference_status"], failed["attempts"]) == ("failed", 3)
    assert failed["last_error"] == "model down (scripted)"
    assert failed["preference_id"] is None


def test_pending_edits_survive_a_restart(start_app: Any) -> None:
    down = RuleBackend(fail_first=10**6)
    first = start_app(backend=down, edit_retry_backoff_s=0.01, edit_max_attempts=50)
    h = first.tenant()
    first.user(h, "alice")
    created = post_edit(first, h)
    deadline = time.monotonic() + 5
    while down.calls < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    first.client.__exit__(None, None, None)  # stop with the edit still queued
    assert down.calls >= 3

    second = start_app(backend=RuleBackend(), edit_retry_backoff_s=0.05)
    edit = wait_edit(second, h, created["id"])
    assert edit["inference_status"] == "done"
    assert edit["attempts"] >= 4
    assert second.context(h, "alice", "tell the team the meeting moved")["inferred_preference"]


def test_queue_is_bounded_per_tenant(start_app: Any) -> None:
    api = start_app(
        backend=RuleBackend(fail_first=10**6), edit_queue_limit=1, edit_retry_backoff_s=60
    )
    h = api.tenant()
    api.user(h, "alice")
    post_edit(api, h)
    response = api.client.post(
        "/v1/users/alice/edits", json={"context": "c", "draft": LONG, "edited": SHORT}, headers=h
    )
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "edit_queue_full"
    assert response.headers["retry-after"]
    trivial = post_edit(api, h, draft=SHORT, edited=SHORT)  # needs no inference: accepted
    assert trivial["inference_status"] == "skipped"


def test_edits_and_preferences_are_scoped(cipher: Any) -> None:
    api, h, _ = cipher
    other = api.tenant("other")
    api.user(other, "alice")
    edit = wait_edit(api, h, post_edit(api, h)["id"])
    c = api.client
    assert c.get(f"/v1/users/alice/edits/{edit['id']}", headers=other).status_code == 404
    pref = f"/v1/users/alice/preferences/{edit['preference_id']}"
    for response in [
        c.get(pref, headers=other),
        c.patch(pref, json={"status": "rejected"}, headers=other),
        c.post(f"{pref}/promote", json={}, headers=other),
        c.get(f"{pref}/history", headers=other),
    ]:
        assert response.status_code == 404
    assert (
        api.context(other, "alice", "tell the team the meeting moved")["inferred_preference"]
        is None
    )
    assert c.get("/v1/users/alice/edits", headers=other).json()["total"] == 0


def test_deleting_the_user_forgets_cached_aggregations(cipher: Any) -> None:
    api, h, _ = cipher
    wait_edit(api, h, post_edit(api, h)["id"])
    wait_edit(api, h, post_edit(api, h, draft=SHORT, edited=LONG)["id"])
    api.context(h, "alice", "tell the team the meeting moved")
    ports = api.client.app.state.ports  # type: ignore[attr-defined]
    assert len(ports.aggregator.cached_users()) == 1
    api.client.delete("/v1/users/alice", headers=h)
    assert ports.aggregator.cached_users() == set()
    assert ports.index.cache.row_count("edit") == 0


def test_bad_edit_input(cipher: Any) -> None:
    api, h, _ = cipher
    for body in [
        {"context": "c", "draft": "d"},
        {"context": "", "draft": "d", "edited": "e"},
        {"context": "c", "draft": "x" * 16001, "edited": "e"},
        {"context": "c", "draft": "d", "edited": "e", "task": "bad task"},
        {"context": "c", "draft": "d", "edited": "e\u200b"},
    ]:
        response = api.client.post("/v1/users/alice/edits", json=body, headers=h)
        assert response.status_code == 422
    assert api.client.get("/v1/users/alice/edits", headers=h).json()["total"] == 0
