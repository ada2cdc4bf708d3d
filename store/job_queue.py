"""A durable job queue kept in a table's own rows, shared by the background jobs (edit
inference, conversation capture). A pending row is a job; a worker claims it under a
lease (owner + expiry) that it renews while it works. Only an expired lease is
reclaimed, by any replica, so a restart never takes over another replica's live job
and a job is never finished twice. Failures are retried with backoff. The table needs
the columns `attempts`, `next_attempt_at`, `last_error`, `lease_owner`,
`lease_expires_at`, `updated_at` and a status column holding InferenceStatus values."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, col, select, update

from store.clock import utcnow
from store.errors import InvalidInput, Overloaded
from store.models import InferenceStatus, Tenant

Job = TypeVar("Job", bound=SQLModel)

QUEUED = (InferenceStatus.pending, InferenceStatus.running)


def lock_tenant_queue(session: Session, tenant_id: uuid.UUID) -> None:
    """Serialise writers that add to one tenant's queue, in the database: the tenant's
    row is locked (SELECT ... FOR UPDATE on PostgreSQL; on SQLite a no-op UPDATE takes
    the single writer lock). Must be the transaction's first statement, so that on
    SQLite the counts read after it are current."""
    if session.get_bind().dialect.name == "postgresql":
        session.exec(select(Tenant.id).where(col(Tenant.id) == tenant_id).with_for_update())
    else:
        session.exec(update(Tenant).where(col(Tenant.id) == tenant_id).values(name=Tenant.name))


class JobTable(Generic[Job]):
    """Which table holds the jobs, its status column, and how its errors name them."""

    def __init__(self, model: type[Job], *, status: str, noun: str, waiting: str) -> None:
        self.model = model
        self.table: Any = model
        self.status: Any = getattr(model, status)
        self.status_name = status
        self.noun = noun  # "edit", "capture": in error codes and messages
        self.waiting = waiting  # "waiting for inference": what a queued job waits for

    def due(self, now: datetime) -> sa.ColumnElement[bool]:
        """A job a worker may claim now. A running job without a lease is one left by a
        version before leases existed: it counts as expired."""
        t = self.table
        return sa.or_(
            sa.and_(
                col(self.status) == InferenceStatus.pending,
                col(t.next_attempt_at) <= now,
            ),
            sa.and_(
                col(self.status) == InferenceStatus.running,
                sa.or_(col(t.lease_expires_at).is_(None), col(t.lease_expires_at) <= now),
            ),
        )

    def held(self, job_id: uuid.UUID, owner: str) -> tuple[sa.ColumnElement[bool], ...]:
        """The job is still this worker's: running under its lease."""
        t = self.table
        return (
            col(t.id) == job_id,
            col(t.lease_owner) == owner,
            col(self.status) == InferenceStatus.running,
        )

    def check_queue(self, session: Session, tenant_id: uuid.UUID, adding: int, limit: int) -> None:
        """Refuse `adding` more queued jobs when the tenant's queue would pass `limit`:
        422 when it could never fit, 429 when it fits once the queue drains. Call under
        `lock_tenant_queue`, in the inserting transaction, so the bound is never overshot."""
        noun = self.noun
        if adding > limit:
            raise InvalidInput(
                f"this adds {adding} {noun}s {self.waiting}; the queue holds at most "
                f"{limit} per tenant: send them in parts",
                code=f"import_exceeds_{noun}_queue",
            )
        queued = session.exec(
            select(sa.func.count())
            .select_from(self.model)
            .where(col(self.table.tenant_id) == tenant_id, col(self.status).in_(QUEUED))
        ).one()
        if int(queued) + adding > limit:
            raise Overloaded(
                f"too many {noun}s are {self.waiting} (at most {limit} per tenant, "
                f"{int(queued)} queued); retry later",
                code=f"{noun}_queue_full",
            )

    def finished_values(self) -> dict[str, Any]:
        """What a finished job's row is set to (under `held`, in the finishing write)."""
        return {
            self.status_name: InferenceStatus.done,
            "last_error": None,
            "lease_owner": None,
            "lease_expires_at": None,
            "updated_at": utcnow(),
        }


class LeasedJobs(Generic[Job]):
    """The claim protocol over one job table."""

    def __init__(self, engine: Engine, jobs: JobTable[Job]) -> None:
        self._engine = engine
        self.jobs = jobs
        self._model = jobs.model
        self._table = jobs.table
        self._status = jobs.status
        self._status_name = jobs.status_name

    def claim_next(self, owner: str, lease: timedelta, now: datetime | None = None) -> Job | None:
        """Lease the next due job to `owner` until now + `lease`: a pending job whose
        retry is due, or a running one whose lease expired (its worker died or hung).
        One statement: on PostgreSQL the row is picked with FOR UPDATE SKIP LOCKED, so
        replicas claiming at once take different jobs; on SQLite the statement holds
        the single writer lock. The WHERE repeats the due test, so a row that stopped
        being due between pick and update is not taken."""
        now = now or utcnow()
        t = self._table
        pick = (
            select(t.id)
            .where(self.jobs.due(now))
            .order_by(col(t.next_attempt_at))
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        with Session(self._engine, expire_on_commit=False) as session:
            claimed = session.exec(
                update(self._model)
                .where(col(t.id) == pick.scalar_subquery(), self.jobs.due(now))
                .values(
                    {
                        self._status_name: InferenceStatus.running,
                        "attempts": col(t.attempts) + 1,
                        "lease_owner": owner,
                        "lease_expires_at": now + lease,
                        "updated_at": now,
                    }
                )
                .returning(col(t.id))
            ).first()
            session.commit()
            if claimed is None:
                return None
            return session.get(self._model, claimed[0])

    def renew(
        self, job_id: uuid.UUID, owner: str, lease: timedelta, now: datetime | None = None
    ) -> bool:
        """Extend the lease while the work goes on; False once it was lost."""
        now = now or utcnow()
        with Session(self._engine) as session:
            result = session.exec(
                update(self._model)
                .where(*self.jobs.held(job_id, owner))
                .values(lease_expires_at=now + lease)
            )
            session.commit()
            return int(result.rowcount) == 1

    def retry_later(
        self,
        job_id: uuid.UUID,
        error: str,
        at: datetime | None,
        owner: str,
        **also: Any,
    ) -> None:
        """Back to pending at `at`, or failed for good when `at` is None; ignored when
        `owner` no longer holds the lease (another worker has the job now). `also` sets
        more columns of the row."""
        status = InferenceStatus.failed if at is None else InferenceStatus.pending
        values: dict[str, Any] = {
            self._status_name: status,
            "last_error": error[:500],
            "lease_owner": None,
            "lease_expires_at": None,
            "updated_at": utcnow(),
            **also,
        }
        if at is not None:
            values["next_attempt_at"] = at
        with Session(self._engine) as session:
            session.exec(update(self._model).where(*self.jobs.held(job_id, owner)).values(values))
            session.commit()

    def release(self, owner: str) -> int:
        """On a clean stop, hand this worker's unfinished jobs back at once (the attempt
        it did not finish is not counted); other workers' leases are never touched."""
        t = self._table
        with Session(self._engine) as session:
            result = session.exec(
                update(self._model)
                .where(
                    col(t.lease_owner) == owner,
                    col(self._status) == InferenceStatus.running,
                )
                .values(
                    {
                        self._status_name: InferenceStatus.pending,
                        "attempts": sa.case((col(t.attempts) > 0, col(t.attempts) - 1), else_=0),
                        "lease_owner": None,
                        "lease_expires_at": None,
                    }
                )
            )
            session.commit()
            return int(result.rowcount)

    def next_due_at(self) -> datetime | None:
        """When the earliest job becomes due: a pending retry, or an expiring lease
        (None: nothing is queued or leased)."""
        t = self._table
        with Session(self._engine) as session:
            pending = session.exec(
                select(sa.func.min(t.next_attempt_at)).where(
                    col(self._status) == InferenceStatus.pending
                )
            ).one()
            leased = session.exec(
                select(sa.func.min(t.lease_expires_at)).where(
                    col(self._status) == InferenceStatus.running
                )
            ).one()
        times = [v for v in (pending, leased) if v is not None]
        return min(times) if times else None
