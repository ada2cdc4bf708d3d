"""Edit inference jobs are leases: a claim holds the job until its lease expires, only an
expired lease is reclaimed (by any replica), and a restart never takes over another
replica's live job. Two apps on one database stand in for two replicas; the store
tests drive the claim protocol with explicit clocks."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from personalization.backends import Completion, GenerationSettings
from personalization.messages import ChatMessage
from store.clock import utcnow
from store.db import create_db_engine, migrate
from store.edits import EditRepository
from store.models import Edit, InferenceStatus, InferredPreference
from tests.fakes import RuleBackend
from tests.store_rows import add_tenant_user
from tests.test_cipher import post_edit, wait_edit


class BlockingBackend(RuleBackend):
    """Answers like RuleBackend, but only once the test releases it: the job stays
    claimed (running) for as long as the test needs."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def complete(self, messages: Sequence[ChatMessage], settings: GenerationSettings) -> Completion:
        self.entered.set()
        assert self.release.wait(60), "never released"
        return super().complete(messages, settings)


def _shared_url(database_url: str | None, tmp_path: Path) -> str:
    return database_url or f"sqlite:///{tmp_path / 'shared.db'}"


def test_a_restarting_replica_leaves_a_live_claim_alone(
    start_app: Any, database_url: str | None, tmp_path: Path
) -> None:
    url = _shared_url(database_url, tmp_path)
    slow = BlockingBackend()
    a = start_app(backend=slow, data_dir=tmp_path / "a", database_url=url, edit_lease_s=2)
    h = a.tenant()
    a.user(h, "alice")
    created = post_edit(a, h)
    assert slow.entered.wait(15), "replica A never claimed the edit"
    running = a.client.get(f"/v1/users/alice/edits/{created['id']}", headers=h).json()
    assert running["inference_status"] == "running"

    other = RuleBackend()
    b = start_app(backend=other, data_dir=tmp_path / "b", database_url=url)
    b.client.__exit__(None, None, None)  # B restarts while A still holds the job
    b = start_app(backend=other, data_dir=tmp_path / "b", database_url=url)
    assert b.client.app.state.ports.worker.run_once() is False  # nothing B may take
    time.sleep(3)  # longer than the lease: A's renewals keep it, B's loop had its chance
    assert b.client.app.state.ports.worker.run_once() is False
    assert other.calls == 0

    slow.release.set()
    done = wait_edit(a, h, created["id"])
    assert (done["inference_status"], done["attempts"]) == ("done", 1)
    preferences = a.client.get("/v1/users/alice/preferences", headers=h).json()
    assert preferences["total"] == 1
    assert preferences["items"][0]["source_edit_id"] == created["id"]


def test_stopping_releases_the_replicas_own_jobs(
    start_app: Any, database_url: str | None, tmp_path: Path
) -> None:
    """A clean stop hands its unfinished jobs back at once (no wait for the lease)."""
    url = _shared_url(database_url, tmp_path)
    down = RuleBackend(fail_first=10**6)
    a = start_app(
        backend=down,
        data_dir=tmp_path / "a",
        database_url=url,
        edit_lease_s=3600,
        edit_retry_backoff_s=0.01,
        edit_max_attempts=50,
    )
    h = a.tenant()
    a.user(h, "alice")
    created = post_edit(a, h)
    deadline = time.monotonic() + 10
    while down.calls < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    a.client.__exit__(None, None, None)
    b = start_app(backend=RuleBackend(), data_dir=tmp_path / "b", database_url=url)
    assert wait_edit(b, h, created["id"])["inference_status"] == "done"


# -- the claim protocol, on the store -------------------------------------------------------


@pytest.fixture
def edits(database_url: str | None, tmp_path: Path) -> tuple[EditRepository, Any, Edit]:
    engine = create_db_engine(_shared_url(database_url, tmp_path))
    migrate(engine)
    with Session(engine, expire_on_commit=False) as session:
        scope = add_tenant_user(session)
        edit = Edit(
            tenant_id=scope.tenant_id,
            user_id=scope.user_id,
            context="c",
            draft="a long draft",
            edited="short",
            distance=0.5,
            embedding_model="m",
            embedding_dim=2,
            context_embedding=b"\x00" * 8,
            inference_status=InferenceStatus.pending,
            next_attempt_at=utcnow() - timedelta(seconds=1),
        )
        session.add(edit)
        session.commit()
    return EditRepository(engine), engine, edit


def test_only_an_expired_lease_is_reclaimed_and_a_lost_lease_cannot_finish(
    edits: tuple[EditRepository, Any, Edit],
) -> None:
    repo, engine, _ = edits
    lease = timedelta(seconds=30)
    t0 = utcnow()
    first = repo.claim_next("replica-1", lease, now=t0)
    assert first is not None
    assert (first.lease_owner, first.attempts) == ("replica-1", 1)
    assert repo.claim_next("replica-2", lease, now=t0 + timedelta(seconds=10)) is None
    assert repo.renew(first, "replica-1", lease, now=t0 + timedelta(seconds=20))
    assert repo.claim_next("replica-2", lease, now=t0 + timedelta(seconds=40)) is None

    # replica-1 stops renewing (it hung or died): its lease expires, replica-2 takes over
    second = repo.claim_next("replica-2", lease, now=t0 + timedelta(seconds=51))
    assert second is not None
    assert (second.id, second.lease_owner, second.attempts) == (first.id, "replica-2", 2)
    assert not repo.renew(first, "replica-1", lease)
    assert repo.finish(first, "Prefers brevity.", "replica-1") is None
    repo.retry_later(first, "late failure", None, "replica-1")  # ignored: not its job
    made = repo.finish(second, "Prefers brevity.", "replica-2")
    assert made is not None
    with Session(engine) as session:
        rows = session.exec(select(InferredPreference)).all()
        row = session.get(Edit, first.id)
    assert [p.preference_id for p in rows] == [made.preference_id]
    assert row is not None
    assert (row.inference_status, row.lease_owner, row.last_error) == ("done", None, None)


def test_concurrent_claims_take_each_job_once(edits: tuple[EditRepository, Any, Edit]) -> None:
    repo, _, _ = edits
    claimed: list[Edit | None] = []
    barrier = threading.Barrier(4)

    def claim(n: int) -> None:
        barrier.wait()
        claimed.append(repo.claim_next(f"replica-{n}", timedelta(seconds=30)))

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len([c for c in claimed if c is not None]) == 1


def test_release_returns_only_the_owners_jobs(edits: tuple[EditRepository, Any, Edit]) -> None:
    repo, _, _ = edits
    job = repo.claim_next("replica-1", timedelta(seconds=30))
    assert job is not None
    assert repo.release("replica-2") == 0
    assert repo.claim_next("replica-2", timedelta(seconds=30)) is None
    assert repo.release("replica-1") == 1
    again = repo.claim_next("replica-2", timedelta(seconds=30))
    assert again is not None
    assert again.attempts == 1  # a released job was never tried: its attempt is given back
