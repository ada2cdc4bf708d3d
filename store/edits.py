"""Edits and their inference queue. The queue is the `edit` table itself: a pending
row is a job; a worker claims it under a lease (owner + expiry) that it renews while
the model works. Only an expired lease is reclaimed, by any replica, so a restart never
takes over another replica's live job and a job is never finished twice. Failures are
retried with backoff. Nothing is lost in memory."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select, update

from store.changes import record_user_change
from store.clock import utcnow
from store.errors import InvalidInput, NotFound, Overloaded
from store.models import (
    Edit,
    InferenceStatus,
    InferredPreference,
    PreferenceStatus,
    Tenant,
)
from store.preferences import new_preference
from store.scope import UserScope
from store.vector_index import Entry, decode_vector

COLLECTION = "edit"
_NOT_FOUND = "no such edit"


def _in_scope(scope: UserScope) -> tuple[sa.ColumnElement[bool], ...]:
    return (col(Edit.tenant_id) == scope.tenant_id, col(Edit.user_id) == scope.user_id)


def _due(now: datetime) -> sa.ColumnElement[bool]:
    """A job a worker may claim now. A running job without a lease is one left by a
    version before leases existed: it counts as expired."""
    return sa.or_(
        sa.and_(
            col(Edit.inference_status) == InferenceStatus.pending,
            col(Edit.next_attempt_at) <= now,
        ),
        sa.and_(
            col(Edit.inference_status) == InferenceStatus.running,
            sa.or_(col(Edit.lease_expires_at).is_(None), col(Edit.lease_expires_at) <= now),
        ),
    )


def _held(edit: Edit, owner: str) -> tuple[sa.ColumnElement[bool], ...]:
    """The job is still this worker's: running under its lease."""
    return (
        col(Edit.id) == edit.id,
        col(Edit.lease_owner) == owner,
        col(Edit.inference_status) == InferenceStatus.running,
    )


def lock_tenant_queue(session: Session, tenant_id: uuid.UUID) -> None:
    """Serialise writers that add to one tenant's edit queue, in the database: the
    tenant's row is locked (SELECT ... FOR UPDATE on PostgreSQL; on SQLite a no-op
    UPDATE takes the single writer lock). Must be the transaction's first statement,
    so that on SQLite the counts read after it are current."""
    if session.get_bind().dialect.name == "postgresql":
        session.exec(select(Tenant.id).where(col(Tenant.id) == tenant_id).with_for_update())
    else:
        session.exec(update(Tenant).where(col(Tenant.id) == tenant_id).values(name=Tenant.name))


def check_queue(session: Session, tenant_id: uuid.UUID, adding: int, limit: int) -> None:
    """Refuse `adding` more queued edits when the tenant's queue would pass `limit`:
    422 when it could never fit, 429 when it fits once the queue drains. Call under
    `lock_tenant_queue`, in the inserting transaction, so the bound is never overshot."""
    if adding > limit:
        raise InvalidInput(
            f"this adds {adding} edits waiting for inference; the queue holds at most "
            f"{limit} per tenant: send them in parts",
            code="import_exceeds_edit_queue",
        )
    queued = session.exec(
        select(sa.func.count())
        .select_from(Edit)
        .where(
            col(Edit.tenant_id) == tenant_id,
            col(Edit.inference_status).in_([InferenceStatus.pending, InferenceStatus.running]),
        )
    ).one()
    if int(queued) + adding > limit:
        raise Overloaded(
            f"too many edits are waiting for inference (at most {limit} per tenant, "
            f"{int(queued)} queued); retry later",
            code="edit_queue_full",
        )


def scope_of(edit: Edit) -> UserScope:
    """The worker acts for the edit's owner; the scope comes from the stored row."""
    return UserScope(tenant_id=edit.tenant_id, user_id=edit.user_id, external_id="")


class EditRepository:
    collection = COLLECTION

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def create(
        self,
        scope: UserScope,
        *,
        context: str,
        draft: str,
        edited: str,
        task: str | None,
        applied_preference: str | None,
        distance: float,
        status: InferenceStatus,
        model: str,
        dim: int,
        embedding: bytes,
        queue_limit: int,
    ) -> tuple[Edit, InferredPreference | None]:
        """A trivial edit with an applied preference records that preference as accepted
        (CIPHER stores it again for this context) in the same transaction. A queued one
        is refused (429) when the tenant's queue is full."""
        with Session(self._engine, expire_on_commit=False) as session:
            if status == InferenceStatus.pending:
                lock_tenant_queue(session, scope.tenant_id)
                check_queue(session, scope.tenant_id, 1, queue_limit)
            edit = Edit(
                tenant_id=scope.tenant_id,
                user_id=scope.user_id,
                context=context,
                draft=draft,
                edited=edited,
                task=task,
                applied_preference=applied_preference,
                distance=distance,
                created_by_key=scope.key_id,
                embedding_model=model,
                embedding_dim=dim,
                context_embedding=embedding,
                inference_status=status,
            )
            preference = None
            if status == InferenceStatus.skipped and applied_preference:
                preference = new_preference(
                    session,
                    scope,
                    text=applied_preference,
                    status=PreferenceStatus.accepted,
                    edit_id=edit.id,
                )
                edit.preference_id = preference.preference_id
            session.add(edit)
            record_user_change(session, scope, "edit", edit.id, "created")
            session.commit()
            return edit, preference

    def get(self, scope: UserScope, edit_id: uuid.UUID) -> Edit:
        with Session(self._engine) as session:
            edit = session.exec(select(Edit).where(*_in_scope(scope), Edit.id == edit_id)).first()
            if edit is None:
                raise NotFound(_NOT_FOUND, code="edit_not_found")
            return edit

    def page(self, scope: UserScope, *, limit: int, offset: int) -> tuple[list[Edit], int]:
        with Session(self._engine) as session:
            total = session.exec(
                select(sa.func.count()).select_from(Edit).where(*_in_scope(scope))
            ).one()
            rows = session.exec(
                select(Edit)
                .where(*_in_scope(scope))
                .order_by(col(Edit.created_at), col(Edit.id))
                .offset(offset)
                .limit(limit)
            ).all()
            return list(rows), int(total)

    def by_ids(self, scope: UserScope, ids: list[uuid.UUID]) -> dict[uuid.UUID, Edit]:
        if not ids:
            return {}
        with Session(self._engine) as session:
            rows = session.exec(select(Edit).where(*_in_scope(scope), col(Edit.id).in_(ids))).all()
            return {row.id: row for row in rows}

    # -- the worker's side (system level) -----------------------------------------------

    def claim_next(self, owner: str, lease: timedelta, now: datetime | None = None) -> Edit | None:
        """Lease the next due job to `owner` until now + `lease`: a pending job whose
        retry is due, or a running one whose lease expired (its worker died or hung).
        One statement: on PostgreSQL the row is picked with FOR UPDATE SKIP LOCKED, so
        replicas claiming at once take different jobs; on SQLite the statement holds
        the single writer lock. The WHERE repeats the due test, so a row that stopped
        being due between pick and update is not taken."""
        now = now or utcnow()
        pick = (
            select(Edit.id)
            .where(_due(now))
            .order_by(col(Edit.next_attempt_at))
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        with Session(self._engine, expire_on_commit=False) as session:
            claimed = session.exec(
                update(Edit)
                .where(col(Edit.id) == pick.scalar_subquery(), _due(now))
                .values(
                    inference_status=InferenceStatus.running,
                    attempts=col(Edit.attempts) + 1,
                    lease_owner=owner,
                    lease_expires_at=now + lease,
                    updated_at=now,
                )
                .returning(col(Edit.id))
            ).first()
            session.commit()
            if claimed is None:
                return None
            return session.get(Edit, claimed[0])

    def renew(self, edit: Edit, owner: str, lease: timedelta, now: datetime | None = None) -> bool:
        """Extend the lease while the model still works; False once it was lost."""
        now = now or utcnow()
        with Session(self._engine) as session:
            result = session.exec(
                update(Edit).where(*_held(edit, owner)).values(lease_expires_at=now + lease)
            )
            session.commit()
            return int(result.rowcount) == 1

    def finish(self, edit: Edit, text: str, owner: str) -> InferredPreference | None:
        """Store the inferred preference, only while `owner` still holds the lease: a
        worker whose lease expired and was reclaimed must not add a second one. None
        when the lease was lost or the user was deleted meanwhile."""
        with Session(self._engine, expire_on_commit=False) as session:
            done = session.exec(
                update(Edit)
                .where(*_held(edit, owner))
                .values(
                    inference_status=InferenceStatus.done,
                    last_error=None,
                    lease_owner=None,
                    lease_expires_at=None,
                    updated_at=utcnow(),
                )
            )
            if int(done.rowcount) != 1:
                session.rollback()
                return None
            preference = new_preference(
                session,
                scope_of(edit),
                text=text,
                status=PreferenceStatus.suggested,
                edit_id=edit.id,
            )
            session.exec(
                update(Edit)
                .where(col(Edit.id) == edit.id)
                .values(preference_id=preference.preference_id)
            )
            session.commit()
            return preference

    def retry_later(self, edit: Edit, error: str, at: datetime | None, owner: str) -> None:
        """Back to pending at `at`, or failed for good when `at` is None; ignored when
        `owner` no longer holds the lease (another worker has the job now)."""
        status = InferenceStatus.failed if at is None else InferenceStatus.pending
        values: dict[str, Any] = {
            "inference_status": status,
            "last_error": error[:500],
            "lease_owner": None,
            "lease_expires_at": None,
            "updated_at": utcnow(),
        }
        if at is not None:
            values["next_attempt_at"] = at
        with Session(self._engine) as session:
            session.exec(update(Edit).where(*_held(edit, owner)).values(**values))
            session.commit()

    def release(self, owner: str) -> int:
        """On a clean stop, hand this worker's unfinished jobs back at once (the attempt
        it did not finish is not counted); other workers' leases are never touched."""
        with Session(self._engine) as session:
            result = session.exec(
                update(Edit)
                .where(
                    col(Edit.lease_owner) == owner,
                    col(Edit.inference_status) == InferenceStatus.running,
                )
                .values(
                    inference_status=InferenceStatus.pending,
                    attempts=sa.case((col(Edit.attempts) > 0, col(Edit.attempts) - 1), else_=0),
                    lease_owner=None,
                    lease_expires_at=None,
                )
            )
            session.commit()
            return int(result.rowcount)

    def next_due_at(self) -> datetime | None:
        """When the earliest job becomes due: a pending retry, or an expiring lease
        (None: nothing is queued or leased)."""
        with Session(self._engine) as session:
            pending = session.exec(
                select(sa.func.min(Edit.next_attempt_at)).where(
                    col(Edit.inference_status) == InferenceStatus.pending
                )
            ).one()
            leased = session.exec(
                select(sa.func.min(Edit.lease_expires_at)).where(
                    col(Edit.inference_status) == InferenceStatus.running
                )
            ).one()
        times = [t for t in (pending, leased) if t is not None]
        return min(times) if times else None

    def queue_stats(self) -> tuple[dict[str, int], datetime | None]:
        """Jobs waiting or running across every tenant, by status, and when the oldest of
        them was recorded: an operator's view (/metrics), so deliberately unscoped."""
        waiting = (InferenceStatus.pending, InferenceStatus.running)
        with Session(self._engine) as session:
            rows = session.exec(
                select(Edit.inference_status, sa.func.count(), sa.func.min(Edit.created_at))
                .where(col(Edit.inference_status).in_(waiting))
                .group_by(col(Edit.inference_status))
            ).all()
        counts = {str(status): int(count) for status, count, _ in rows}
        oldest = min((first for _, _, first in rows if first is not None), default=None)
        return counts, oldest

    # -- index maintenance: edits whose context carries a preference ----------------------

    def _indexed(self, model: str) -> tuple[sa.ColumnElement[bool], ...]:
        return (col(Edit.preference_id).is_not(None), col(Edit.embedding_model) == model)

    def entries(self, user_ids: set[uuid.UUID] | None, *, model: str) -> Iterator[Entry]:
        query = sa.select(
            col(Edit.user_id), col(Edit.id), col(Edit.embedding_dim), col(Edit.context_embedding)
        ).where(*self._indexed(model))
        if user_ids is not None:
            query = query.where(col(Edit.user_id).in_(user_ids))
        with Session(self._engine) as session:
            for user_id, row_id, dim, blob in session.execute(query):
                yield Entry(user_id, COLLECTION, row_id, 0, decode_vector(blob, dim))

    def count_rows(self, *, model: str) -> int:
        with Session(self._engine) as session:
            value = session.exec(
                select(sa.func.count()).select_from(Edit).where(*self._indexed(model))
            ).one()
            return int(value)

    def row_ids(self, *, model: str) -> Iterator[tuple[uuid.UUID, uuid.UUID]]:
        """(user, row) of every row `entries` would yield, without the vectors."""
        query = sa.select(col(Edit.user_id), col(Edit.id)).where(*self._indexed(model))
        with Session(self._engine) as session:
            yield from session.execute(query).tuples()
