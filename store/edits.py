"""Edits and their inference queue. The queue is the `edit` table itself: a pending
row is a job, claimed atomically by a worker, retried with backoff, and a restart
returns claimed-but-unfinished rows to pending. Nothing is lost in memory."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select, update

from store.changes import record_user_change
from store.clock import utcnow
from store.errors import NotFound
from store.models import Edit, InferenceStatus, InferredPreference, PreferenceStatus
from store.preferences import new_preference
from store.scope import UserScope
from store.vector_index import Entry, decode_vector

COLLECTION = "edit"
_NOT_FOUND = "no such edit"


def _in_scope(scope: UserScope) -> tuple[sa.ColumnElement[bool], ...]:
    return (col(Edit.tenant_id) == scope.tenant_id, col(Edit.user_id) == scope.user_id)


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
    ) -> tuple[Edit, InferredPreference | None]:
        """A trivial edit with an applied preference records that preference as accepted
        (CIPHER stores it again for this context) in the same transaction."""
        with Session(self._engine, expire_on_commit=False) as session:
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

    def restore(
        self,
        scope: UserScope,
        *,
        fields: dict[str, Any],
        model: str,
        dim: int,
        embedding: bytes,
        preference: tuple[str, PreferenceStatus] | None,
    ) -> Edit:
        """Re-create an exported edit (and its preference's current text and status)
        for this user; unfinished inference is queued again."""
        status = InferenceStatus(fields["inference_status"])
        if status in (InferenceStatus.pending, InferenceStatus.running):
            status = InferenceStatus.pending
        with Session(self._engine, expire_on_commit=False) as session:
            edit = Edit(
                tenant_id=scope.tenant_id,
                user_id=scope.user_id,
                context=fields["context"],
                draft=fields["draft"],
                edited=fields["edited"],
                task=fields.get("task"),
                applied_preference=fields.get("applied_preference"),
                distance=float(fields["distance"]),
                created_by_key=scope.key_id,
                embedding_model=model,
                embedding_dim=dim,
                context_embedding=embedding,
                inference_status=status,
                attempts=int(fields.get("attempts", 0)),
                last_error=fields.get("last_error"),
            )
            if preference is not None:
                text, pref_status = preference
                row = new_preference(session, scope, text=text, status=pref_status, edit_id=edit.id)
                edit.preference_id = row.preference_id
            session.add(edit)
            record_user_change(session, scope, "edit", edit.id, "imported")
            session.commit()
            return edit

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

    def queued(self, tenant_id: uuid.UUID) -> int:
        """Edits of this tenant waiting for inference: bounds the queue per tenant."""
        with Session(self._engine) as session:
            value = session.exec(
                select(sa.func.count())
                .select_from(Edit)
                .where(
                    col(Edit.tenant_id) == tenant_id,
                    col(Edit.inference_status).in_(
                        [InferenceStatus.pending, InferenceStatus.running]
                    ),
                )
            ).one()
            return int(value)

    # -- the worker's side (system level) -----------------------------------------------

    def requeue_running(self) -> int:
        """After a restart, jobs claimed by the dead process are pending again."""
        with Session(self._engine) as session:
            result = session.exec(
                update(Edit)
                .where(col(Edit.inference_status) == InferenceStatus.running)
                .values(inference_status=InferenceStatus.pending)
            )
            session.commit()
            return int(result.rowcount)

    def next_due_at(self) -> datetime | None:
        """When the earliest pending job becomes due (None: the queue is empty)."""
        with Session(self._engine) as session:
            return session.exec(
                select(sa.func.min(Edit.next_attempt_at)).where(
                    col(Edit.inference_status) == InferenceStatus.pending
                )
            ).one()

    def claim_next(self, now: datetime | None = None) -> Edit | None:
        now = now or utcnow()
        with Session(self._engine, expire_on_commit=False) as session:
            candidate = session.exec(
                select(Edit.id)
                .where(
                    col(Edit.inference_status) == InferenceStatus.pending,
                    col(Edit.next_attempt_at) <= now,
                )
                .order_by(col(Edit.next_attempt_at))
                .limit(1)
            ).first()
            if candidate is None:
                return None
            claimed = session.exec(
                update(Edit)
                .where(
                    col(Edit.id) == candidate,
                    col(Edit.inference_status) == InferenceStatus.pending,
                )
                .values(
                    inference_status=InferenceStatus.running,
                    attempts=col(Edit.attempts) + 1,
                    updated_at=now,
                )
            )
            session.commit()
            if claimed.rowcount != 1:
                return None  # another worker took it
            return session.get(Edit, candidate)

    def finish(self, edit: Edit, text: str) -> InferredPreference:
        with Session(self._engine, expire_on_commit=False) as session:
            row = session.get(Edit, edit.id)
            if row is None:
                raise NotFound(_NOT_FOUND, code="edit_not_found")  # user deleted meanwhile
            preference = new_preference(
                session,
                scope_of(row),
                text=text,
                status=PreferenceStatus.suggested,
                edit_id=row.id,
            )
            row.preference_id = preference.preference_id
            row.inference_status = InferenceStatus.done
            row.last_error = None
            row.updated_at = utcnow()
            session.add(row)
            session.commit()
            return preference

    def retry_later(self, edit: Edit, error: str, at: datetime | None) -> None:
        """Back to pending at `at`, or failed for good when `at` is None."""
        with Session(self._engine) as session:
            row = session.get(Edit, edit.id)
            if row is None:
                return
            row.inference_status = InferenceStatus.failed if at is None else InferenceStatus.pending
            row.next_attempt_at = at or row.next_attempt_at
            row.last_error = error[:500]
            row.updated_at = utcnow()
            session.add(row)
            session.commit()

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
