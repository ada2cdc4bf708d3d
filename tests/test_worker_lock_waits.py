"""A background worker that meets a database held by another transaction (a bulk write
on SQLite, a table lock on PostgreSQL) logs one WARNING line per try, without a
traceback, counts it, and goes on once the lock is gone; any other failure is still an
ERROR with its traceback. The locks are real: another connection holds them."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg.errors
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

from personalization.capture_worker import CaptureWorker
from personalization.embedder import Embedder
from personalization.job_worker import JobTerms
from personalization.statement_detector import DetectedStatement
from store.captures import CaptureRepository
from store.db import create_db_engine, lock_contention, migrate
from store.instructions import InstructionRepository
from store.models import CaptureJob, InferenceStatus
from store.scope import UserScope
from tests.conftest import Api
from tests.fakes import HashingEmbedder
from tests.store_rows import add_tenant_user


class Always:
    ready = True


TERMS = JobTerms(poll_s=0.05, backoff_s=0.001)


def make_user(engine: Engine) -> UserScope:
    with Session(engine, expire_on_commit=False) as session:
        scope = add_tenant_user(session)
        session.commit()
    return scope


def until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def quick_lock_wait(url: str) -> Engine:
    """The app's engine, but giving up on a held lock after 50 ms instead of 10 s (the
    SQLite busy timeout) or never (PostgreSQL's default)."""
    if url.startswith("sqlite"):
        engine = create_db_engine(url)
        sa.event.listen(
            engine, "connect", lambda conn, _record: conn.execute("PRAGMA busy_timeout=50")
        )
        return engine
    return sa.create_engine(url, connect_args={"options": "-c lock_timeout=50"})


@pytest.fixture
def db_url(database_url: str | None, tmp_path: Path) -> str:
    url = database_url or f"sqlite:///{tmp_path / 'w.db'}"
    engine = create_db_engine(url)
    migrate(engine)
    engine.dispose()
    return url


class HeldLock:
    """Another connection holds the capture queue: SQLite's single writer lock (BEGIN
    IMMEDIATE, as a bulk import's open transaction does), or on PostgreSQL an exclusive
    lock on the table."""

    def __init__(self, url: str) -> None:
        self._sqlite: sqlite3.Connection | None = None
        self._pg: sa.Connection | None = None
        if url.startswith("sqlite"):
            self._sqlite = sqlite3.connect(url.split("///", 1)[1], isolation_level=None)
            self._sqlite.execute("BEGIN IMMEDIATE")
        else:
            self._pg = sa.create_engine(url).connect()
            self._pg.execute(sa.text("LOCK TABLE capture_job IN ACCESS EXCLUSIVE MODE"))

    def release(self) -> None:
        if self._sqlite is not None:
            self._sqlite.execute("ROLLBACK")
            self._sqlite.close()
        if self._pg is not None:
            self._pg.rollback()
            self._pg.close()


def test_a_held_database_is_one_warning_line_per_try_and_the_job_runs_after(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    engine = quick_lock_wait(db_url)
    scope = make_user(engine)
    captures = CaptureRepository(engine)
    job = captures.submit(
        scope, user_messages=["I prefer tea."], conversation_id=None, queue_limit=10
    )
    caplog.set_level(logging.INFO, logger="tailor.captures")
    held = HeldLock(db_url)
    worker = CaptureWorker(
        captures, InstructionRepository(engine), HashingEmbedder(), Always(), terms=TERMS
    )
    worker.start()
    try:
        until(lambda: worker.lock_waits >= 3, "the worker to meet the lock")
        assert worker.processed == 0
    finally:
        held.release()
    try:
        until(lambda: worker.processed == 1, "the job to run once the lock is gone")
    finally:
        worker.stop()
    with Session(engine) as session:
        stored = session.get(CaptureJob, job.id)
        assert stored is not None and stored.status == InferenceStatus.done

    records = [r for r in caplog.records if r.name == "tailor.captures"]
    assert [r for r in records if r.levelno >= logging.ERROR] == []
    busy = [r for r in records if "database busy" in r.getMessage()]
    assert len(busy) >= 3 and worker.lock_waits >= len(busy)
    expected = "SQLITE_BUSY" if db_url.startswith("sqlite") else "55P03"
    for record in busy:
        assert record.levelno == logging.WARNING and record.exc_info is None
        assert expected in record.getMessage() and "\n" not in record.getMessage()
        assert "SELECT" not in record.getMessage()  # no statement, so no parameters


class BrokenClaims(CaptureRepository):
    def claim_next(
        self, owner: str, lease: timedelta, now: datetime | None = None
    ) -> CaptureJob | None:
        raise RuntimeError("the disk is on fire")


def test_any_other_failure_is_still_an_error_with_its_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'b.db'}")
    migrate(engine)
    caplog.set_level(logging.INFO, logger="tailor.captures")
    worker = CaptureWorker(
        BrokenClaims(engine),
        InstructionRepository(engine),
        HashingEmbedder(),
        Always(),
        terms=TERMS,
    )
    worker.start()
    try:
        until(
            lambda: any(r.levelno == logging.ERROR for r in caplog.records),
            "the failure to be logged",
        )
    finally:
        worker.stop()
    error = next(r for r in caplog.records if r.levelno == logging.ERROR)
    assert error.getMessage() == "capture worker iteration failed"
    assert error.exc_info is not None and isinstance(error.exc_info[1], RuntimeError)
    assert worker.lock_waits == 0


@pytest.mark.parametrize(
    ("orig", "expected"),
    [
        (psycopg.errors.LockNotAvailable(), "55P03"),
        (psycopg.errors.SerializationFailure(), "40001"),
        (psycopg.errors.DeadlockDetected(), "40P01"),
        (psycopg.errors.UniqueViolation(), None),
        (psycopg.errors.QueryCanceled(), None),
        (sqlite3.OperationalError("no such table: x"), None),
    ],
)
def test_which_database_errors_are_lock_waits(orig: Exception, expected: str | None) -> None:
    wrapped = sa.exc.OperationalError("SELECT 1", {}, orig)
    assert lock_contention(wrapped) == expected
    assert lock_contention(RuntimeError("database is locked")) is None


def test_metrics_export_each_workers_lock_waits(start_app: Any) -> None:
    app: Api = start_app()
    ports = app.client.app.state.ports  # type: ignore[attr-defined]
    ports.capture_worker.lock_waits += 2  # what a held database leaves (counted above)

    def value(worker: str) -> float:
        text = app.client.get("/metrics").text
        prefix = f'tailor_worker_lock_waits_total{{worker="{worker}"}} '
        [line] = [line for line in text.splitlines() if line.startswith(prefix)]
        return float(line.removeprefix(prefix))

    assert value("capture") == ports.capture_worker.lock_waits >= 2
    assert value("edit") == ports.worker.lock_waits


def test_a_lock_wait_inside_a_job_is_a_warning_and_a_plain_retry(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'j.db'}")
    migrate(engine)
    scope = make_user(engine)
    captures = CaptureRepository(engine)
    job = captures.submit(
        scope, user_messages=["I prefer tea."], conversation_id=None, queue_limit=9
    )

    def held(messages: Sequence[str], embedder: Embedder) -> list[DetectedStatement]:
        # what a statement that met PostgreSQL's lock_timeout raises
        raise sa.exc.OperationalError("SELECT 1", {}, psycopg.errors.LockNotAvailable())

    caplog.set_level(logging.INFO, logger="tailor.captures")
    worker = CaptureWorker(
        captures,
        InstructionRepository(engine),
        HashingEmbedder(),
        Always(),
        detect=held,
        terms=TERMS,
    )
    assert worker.run_once()
    with Session(engine) as session:
        stored = session.get(CaptureJob, job.id)
        assert stored is not None
        assert (stored.status, stored.attempts) == (InferenceStatus.pending, 1)
        assert stored.last_error == "the database was busy (another transaction held the lock)"
    [record] = [r for r in caplog.records if r.name == "tailor.captures"]
    assert (record.levelno, record.exc_info) == (logging.WARNING, None)
    assert "55P03" in record.getMessage() and worker.lock_waits == 1


def test_a_failed_jobs_error_keeps_no_statement_or_parameters(tmp_path: Path) -> None:
    """A job's `last_error` is readable by the tenant's key: a database error's text
    quotes the statement and its parameters (profile text), so only the driver's cause
    is kept."""
    from store.db import failure_text

    engine = create_db_engine(f"sqlite:///{tmp_path / 'f.db'}")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (x TEXT UNIQUE)"))
        conn.execute(sa.text("INSERT INTO t VALUES (:x)"), {"x": "I am allergic to peanuts"})
    with pytest.raises(sa.exc.IntegrityError) as raised, engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO t VALUES (:x)"), {"x": "I am allergic to peanuts"})
    assert "peanuts" in str(raised.value)  # what SQLAlchemy's own message would leak
    text = failure_text(raised.value)
    assert text == "unexpected IntegrityError: UNIQUE constraint failed: t.x"
    assert "peanuts" not in text and "INSERT" not in text
    assert failure_text(ValueError("bad reply")) == "unexpected ValueError: bad reply"
