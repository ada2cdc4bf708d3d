"""Auto-accept (TAILOR_CAPTURE_AUTO_ACCEPT), on SQLite and PostgreSQL: a capture job
accepts its confident suggestions in the transaction that marks it done, through the
API's accept path. So a client that reads `done` finds the instructions already in the
profile and in the next relevant turn's context, and a job whose accept cannot land
writes nothing at all: it is retried from scratch, never left half applied."""

from __future__ import annotations

import threading
import uuid
from typing import Any

from sqlmodel import Session, select

from store.captures import Acceptance
from store.instructions import InstructionChanges
from store.models import CaptureJob, Suggestion
from store.scope import UserScope
from tests.test_capture_api import captured, suggestions


def test_auto_accept_applies_confident_suggestions_at_once(start_app: Any) -> None:
    # With the tests' hashing embedder the detector's classifier does not apply: every
    # statement it finds has the patterns' confidence, 0.6.
    app = start_app(capture_auto_accept=0.6)
    h = app.tenant()
    app.user(h, "alice")
    before = app.context(h, "alice", "Suggest a seafood dinner for tonight")
    assert "shellfish" not in (before["system_message"] or {}).get("content", "")
    job = captured(app, h, ("user", "I'm allergic to shellfish. I like jazz."))
    # The job reads done only once what it accepted is an instruction: no waiting.
    accepted = suggestions(app, h, "accepted")
    assert sorted(a["id"] for a in accepted) == sorted(job["suggestions"])
    assert sorted("shellfish" in a["text"] for a in accepted) == [False, True]
    assert all(a["confidence"] >= 0.6 for a in accepted) and suggestions(app, h) == []
    listed = app.client.get("/v1/users/alice/instructions", headers=h).json()["items"]
    assert sorted((i["source"], i["capture_quote"], i["capture_id"]) for i in listed) == sorted(
        ("conversation", a["quote"], job["id"]) for a in accepted
    )
    after = app.context(h, "alice", "Suggest a seafood dinner for tonight")
    assert "allergic to shellfish" in after["system_message"]["content"]


def test_auto_accept_supersedes_a_contradicted_instruction_within_the_job(
    start_app: Any,
) -> None:
    app = start_app(capture_auto_accept=0.6)
    h = app.tenant()
    app.user(h, "alice")
    old = app.instruction(h, "alice", text="I'm vegetarian.", source="user")
    job = captured(app, h, ("user", "Good news: I eat fish again now."))
    [taken] = suggestions(app, h, "accepted")
    assert job["suggestions"] == [taken["id"]]
    assert (taken["action"], taken["target_instruction_id"]) == ("supersede", old["id"])
    current = app.client.get(f"/v1/users/alice/instructions/{old['id']}", headers=h).json()
    assert (current["version"], current["text"]) == (2, taken["text"])
    assert current["capture_quote"] == taken["quote"]
    history = app.client.get(f"/v1/users/alice/instructions/{old['id']}/history", headers=h)
    assert [v["text"] for v in history.json()["versions"]] == ["I'm vegetarian.", taken["text"]]
    context = app.context(h, "alice", "What should I cook for dinner tonight?")
    content = context["system_message"]["content"]
    assert "fish again" in content and "I'm vegetarian." not in content


def test_a_job_whose_accept_cannot_land_writes_nothing_and_its_retry_applies_it(
    start_app: Any,
) -> None:
    """The instruction a confident suggestion supersedes moves after the worker keyed
    the accept and before the job's transaction: that transaction (suggestion, accept,
    done) rolls back whole, and the retry plans again on the version that won."""
    app = start_app(capture_auto_accept=0.6, edit_retry_backoff_s=0.01)
    h = app.tenant()
    app.user(h, "alice")
    old = app.instruction(h, "alice", text="I'm vegetarian.", source="user")
    ports = app.client.app.state.ports  # type: ignore[attr-defined]
    service = ports.capture_service
    prepare = service.prepare_accept
    between: list[tuple[list[Suggestion], CaptureJob]] = []
    lock = threading.Lock()

    def racing_prepare(scope: UserScope, suggestion: Suggestion, text: str | None = None) -> Any:
        acceptance: Acceptance = prepare(scope, suggestion, text)
        with lock, Session(ports.engine) as session:
            stored = list(session.exec(select(Suggestion)).all())
            [job] = session.exec(select(CaptureJob)).all()
        between.append((stored, job))
        if len(between) == 1:  # another writer changes the target after it was read
            changes = InstructionChanges(text="I am a vegetarian.")
            ports.writer.update_instruction(scope, uuid.UUID(old["id"]), changes)
        return acceptance

    service.prepare_accept = racing_prepare
    job = captured(app, h, ("user", "Good news: I eat fish again now."))

    [(first_seen, _), (retry_seen, retried)] = between
    assert first_seen == [] and retry_seen == []  # the failed attempt left no suggestion
    assert (retried.status, retried.attempts) == ("running", 2)
    assert retried.last_error is not None and "changed concurrently" in retried.last_error
    [taken] = suggestions(app, h, "accepted")
    assert job["suggestions"] == [taken["id"]] and suggestions(app, h) == []
    history = app.client.get(f"/v1/users/alice/instructions/{old['id']}/history", headers=h)
    assert [v["text"] for v in history.json()["versions"]] == [
        "I'm vegetarian.",
        "I am a vegetarian.",
        taken["text"],
    ]


def test_of_two_confident_supersedes_of_one_instruction_one_is_accepted(
    start_app: Any,
) -> None:
    """Each would replace the version the other read: the first is accepted with the
    job, the second stays pending, and accepting it later writes the version after."""
    app = start_app(capture_auto_accept=0.6)
    h = app.tenant()
    app.user(h, "alice")
    old = app.instruction(h, "alice", text="I'm vegetarian.", source="user")
    job = captured(app, h, ("user", "I eat fish again now. And I eat chicken now."))
    [taken] = suggestions(app, h, "accepted")
    [waiting] = suggestions(app, h)
    assert sorted(job["suggestions"]) == sorted([taken["id"], waiting["id"]])
    for s in (taken, waiting):
        assert (s["action"], s["target_instruction_id"]) == ("supersede", old["id"])
    current = app.client.get(f"/v1/users/alice/instructions/{old['id']}", headers=h).json()
    assert (current["version"], current["text"]) == (2, taken["text"])
    later = app.client.post(f"/v1/users/alice/suggestions/{waiting['id']}/accept", headers=h)
    assert later.status_code == 200, later.text
    assert later.json()["instruction"]["version"] == 3
