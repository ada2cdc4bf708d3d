"""Edits and their inference queue. The queue is the `edit` table itself: a pending
row is a job, claimed under a lease by the protocol of store/job_queue.py (only an
expired lease is reclaimed; a worker that lost its lease cannot finish the job).
Nothing is lost in memory."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select, update

from store.changes import record_user_change
from store.errors import NotFound
from store.item_refresh import ItemRows
from store.job_queue import JobTable, LeasedJobs, lock_tenant_queue
from store.models import (
    Edit,
    InferenceStatus,
    InferredPreference,
    PreferenceStatus,
)
from store.preferences import new_preference
from store.scope import UserScope
from store.vector_index import Entry, decode_vector

COLLECTION = "edit"
_NOT_FOUND = "no such edit"


EDIT_JOBS = JobTable(Edit, status="inference_status", noun="edit", waiting="waiting for inference")


def _in_scope(scope: UserScope) -> tuple[sa.ColumnElement[bool], ...]:
    return (col(Edit.tenant_id) == scope.tenant_id, col(Edit.user_id) == scope.user_id)


def check_queue(session: Session, tenant_id: uuid.UUID, adding: int, limit: int) -> None:
    """Refuse `adding` more queued edits past the tenant's `limit` (see LeasedJobs)."""
    EDIT_JOBS.check_queue(session, tenant_id, adding, limit)


def scope_of(edit: Edit) -> UserScope:
    """The worker acts for the edit's owner; the scope comes from the stored row."""
    return UserScope(tenant_id=edit.tenant_id, user_id=edit.user_id, external_id="")


class EditRepository:
    collection = COLLECTION

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._jobs = LeasedJobs(engine, EDIT_JOBS)

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
                EDIT_JOBS.check_queue(session, scope.tenant_id, 1, queue_limit)
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

    # -- the worker's side (system level): the lease protocol of store/job_queue.py -----

    def claim_next(self, owner: str, lease: timedelta, now: datetime | None = None) -> Edit | None:
        return self._jobs.claim_next(owner, lease, now)

    def renew(self, edit: Edit, owner: str, lease: timedelta, now: datetime | None = None) -> bool:
        return self._jobs.renew(edit.id, owner, lease, now)

    def finish(self, edit: Edit, text: str, owner: str) -> InferredPreference | None:
        """Store the inferred preference, only while `owner` still holds the lease: a
        worker whose lease expired and was reclaimed must not add a second one. None
        when the lease was lost or the user was deleted meanwhile."""
        with Session(self._engine, expire_on_commit=False) as session:
            done = session.exec(
                update(Edit)
                .where(*EDIT_JOBS.held(edit.id, owner))
                .values(EDIT_JOBS.finished_values())
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
        self._jobs.retry_later(edit.id, error, at, owner)

    def release(self, owner: str) -> int:
        return self._jobs.release(owner)

    def next_due_at(self) -> datetime | None:
        return self._jobs.next_due_at()

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

    def entries(
        self,
        user_ids: set[uuid.UUID] | None,
        *,
        model: str,
        item_ids: set[uuid.UUID] | None = None,
    ) -> Iterator[Entry]:
        query = sa.select(
            col(Edit.user_id), col(Edit.id), col(Edit.embedding_dim), col(Edit.context_embedding)
        ).where(*self._indexed(model))
        if user_ids is not None:
            query = query.where(col(Edit.user_id).in_(user_ids))
        if item_ids is not None:
            query = query.where(col(Edit.id).in_(item_ids))
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

    item_entity = "edit"  # the change-log entity whose ids (= row ids) item_rows reads

    def item_rows(self, user_id: uuid.UUID, item_ids: set[uuid.UUID], *, model: str) -> ItemRows:
        """A change names the row itself: drop it, and put it back if still indexed."""
        return ItemRows(
            list(item_ids), list(self.entries({user_id}, model=model, item_ids=item_ids))
        )
