"""The capture worker on a real store (SQLite and PostgreSQL) with fakes for the model
parts: a job is processed by one worker only (leases), a worker that lost its lease
writes nothing, two workers capturing the same statement at once leave one suggestion
(the database settles it), and a failing detector ends in `failed` without keeping
the user's messages."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from personalization.capture import KnownItem
from personalization.capture_worker import CaptureWorker
from personalization.embedder import Embedder
from personalization.job_worker import JobTerms
from personalization.statement_detector import DetectedStatement
from store.captures import CaptureRepository
from store.clock import utcnow
from store.db import create_db_engine, migrate
from store.instructions import InstructionRepository
from store.models import CaptureJob, Suggestion
from store.scope import UserScope
from tests.fakes import HashingEmbedder
from tests.store_rows import add_tenant_user


class Always:
    ready = True


@pytest.fixture
def store(database_url: str | None, tmp_path: Path) -> tuple[Any, UserScope]:
    engine = create_db_engine(database_url or f"sqlite:///{tmp_path / 'c.db'}")
    migrate(engine)
    with Session(engine, expire_on_commit=False) as session:
        scope = add_tenant_user(session)
        session.commit()
    return engine, scope


def worker(engine: Any, max_attempts: int = 5, **kw: Any) -> CaptureWorker:
    return CaptureWorker(
        CaptureRepository(engine),
        InstructionRepository(engine),
        HashingEmbedder(),
        Always(),
        terms=JobTerms(backoff_s=0.001, max_attempts=max_attempts),
        **kw,
    )


def submit(engine: Any, scope: UserScope, *texts: str) -> CaptureJob:
    return CaptureRepository(engine).submit(
        scope, user_messages=list(texts), conversation_id=None, queue_limit=100
    )


def drain(w: CaptureWorker, engine: Any) -> None:
    """Run until no job is queued (retries are due within milliseconds)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if not w.run_once() and CaptureRepository(engine).next_due_at() is None:
            return
        time.sleep(0.005)
    raise AssertionError("jobs still queued")


def rows(engine: Any, model: Any) -> list[Any]:
    with Session(engine) as session:
        return list(session.exec(select(model)).all())


def test_only_one_worker_holds_a_job_and_a_lost_lease_writes_nothing(
    store: tuple[Any, UserScope],
) -> None:
    engine, scope = store
    job = submit(engine, scope, "I'm allergic to peanuts.")
    repo = CaptureRepository(engine)
    lease = timedelta(seconds=30)
    t0 = utcnow()
    first = repo.claim_next("replica-1", lease, now=t0)
    assert first is not None and first.id == job.id
    assert repo.claim_next("replica-2", lease, now=t0 + timedelta(seconds=10)) is None
    assert worker(engine).run_once() is False  # a live lease is not another worker's to take
    second = repo.claim_next("replica-2", lease, now=t0 + timedelta(seconds=31))
    assert second is not None and (second.id, second.attempts) == (job.id, 2)
    assert not repo.renew(first, "replica-1", lease)
    lost = repo.finish(
        first,
        "replica-1",
        new=[],
        reinforce_instructions=[],
        reinforce_suggestions=[],
    )
    assert lost is None
    assert rows(engine, Suggestion) == []
    [still] = rows(engine, CaptureJob)
    assert (still.status, still.lease_owner) == ("running", "replica-2")


def test_two_workers_capturing_one_statement_at_once_leave_one_suggestion(
    store: tuple[Any, UserScope],
) -> None:
    engine, scope = store
    both_read = threading.Barrier(2, timeout=120)  # generous: CI machines are loaded

    class SlowWriter(CaptureWorker):
        """Reads what the user's profile holds, then waits for the other worker to
        have read it too: both plan on the same profile before either writes."""

        def _known(self, scope: UserScope) -> list[KnownItem]:
            known = super()._known(scope)
            if not both_read.broken:
                with contextlib.suppress(threading.BrokenBarrierError):
                    both_read.wait()
            return known

    def slow_worker() -> CaptureWorker:
        return SlowWriter(
            CaptureRepository(engine),
            InstructionRepository(engine),
            HashingEmbedder(),
            Always(),
            terms=JobTerms(backoff_s=0.001),
        )

    a, b = slow_worker(), slow_worker()
    submit(engine, scope, "I prefer short answers.")
    submit(engine, scope, "i PREFER short answers!")

    def run(w: CaptureWorker) -> None:
        w.run_once()

    threads = [threading.Thread(target=run, args=(w,)) for w in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(150)
    both_read.abort()  # later attempts do not wait
    drain(a, engine)  # the loser's retry finds the winner's row and reinforces it
    [suggestion] = rows(engine, Suggestion)
    assert suggestion.seen_count == 2
    jobs = rows(engine, CaptureJob)
    assert sorted(j.status for j in jobs) == ["done", "done"]
    assert sorted(j.attempts for j in jobs) == [1, 2]
    assert all(j.suggestion_ids == [str(suggestion.id)] for j in jobs)
    assert all(j.user_messages == [] for j in jobs)


def test_a_failing_detector_ends_in_failed_and_drops_the_messages(
    store: tuple[Any, UserScope],
) -> None:
    engine, scope = store

    def broken(messages: Sequence[str], embedder: Embedder) -> list[DetectedStatement]:
        raise RuntimeError("detector exploded")

    w = worker(engine, detect=broken, max_attempts=2)
    submit(engine, scope, "I'm vegan.")
    drain(w, engine)
    [job] = rows(engine, CaptureJob)
    assert (job.status, job.attempts) == ("failed", 2)
    assert job.last_error is not None and "detector exploded" in job.last_error
    assert job.user_messages == []
    assert rows(engine, Suggestion) == []
