"""Conversation capture: the job queue (the `capture_job` table, leased by the protocol
of store/job_queue.py) and the suggestions a job leaves. Every request-side query
carries the user's scope; the worker acts in the scope stored on the job's row."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select, update

from store.changes import record_user_change
from store.clock import utcnow
from store.errors import Conflict, NotFound
from store.job_queue import JobTable, LeasedJobs, lock_tenant_queue
from store.models import (
    CaptureJob,
    InferenceStatus,
    Instruction,
    Suggestion,
    SuggestionAction,
    SuggestionStatus,
)
from store.scope import UserScope
from store.versioning import commit_or_conflict, stage_next_version

CAPTURE_JOBS = JobTable(CaptureJob, status="status", noun="capture", waiting="waiting to be read")


@dataclass(frozen=True)
class NewSuggestion:
    text: str
    text_key: str
    quote: str
    confidence: float
    action: SuggestionAction
    target_instruction_id: uuid.UUID | None
    embedding: bytes


@dataclass(frozen=True)
class Acceptance:
    """An accept ready to write, keyed before any transaction opens (no model call
    while a write is held): the instruction row for the accepted wording, and the
    version it supersedes as it was read (None: a new instruction)."""

    suggestion_id: uuid.UUID
    instruction: Instruction
    replaces: Instruction | None


def new_suggestions(
    job: CaptureJob, new: Sequence[NewSuggestion], *, model: str, dim: int
) -> list[Suggestion]:
    """The pending rows a job adds, built before its transaction so that the confident
    ones can be keyed for accepting first."""
    now = utcnow()
    return [
        Suggestion(
            tenant_id=job.tenant_id,
            user_id=job.user_id,
            text=item.text,
            text_key=item.text_key,
            quote=item.quote,
            conversation_id=job.conversation_id,
            capture_id=job.id,
            confidence=item.confidence,
            action=item.action,
            target_instruction_id=item.target_instruction_id,
            status=SuggestionStatus.pending,
            last_seen_at=now,
            embedding_model=model,
            embedding_dim=dim,
            text_embedding=item.embedding,
            created_at=now,
        )
        for item in new
    ]


def scope_of(job: CaptureJob) -> UserScope:
    """The worker acts for the job's owner; the scope comes from the stored row."""
    return UserScope(tenant_id=job.tenant_id, user_id=job.user_id, external_id="")


def _suggestion_in_scope(scope: UserScope) -> tuple[sa.ColumnElement[bool], ...]:
    return (col(Suggestion.tenant_id) == scope.tenant_id, col(Suggestion.user_id) == scope.user_id)


def already_decided() -> Conflict:
    return Conflict(
        "this suggestion was accepted or rejected already", code="suggestion_already_decided"
    )


class CaptureRepository:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._jobs = LeasedJobs(engine, CAPTURE_JOBS)

    # -- jobs, request side ---------------------------------------------------------------

    def submit(
        self,
        scope: UserScope,
        *,
        user_messages: Sequence[str],
        conversation_id: str | None,
        queue_limit: int,
    ) -> CaptureJob:
        """Queue a job (429 `capture_queue_full` past the tenant's limit)."""
        with Session(self._engine, expire_on_commit=False) as session:
            lock_tenant_queue(session, scope.tenant_id)
            CAPTURE_JOBS.check_queue(session, scope.tenant_id, 1, queue_limit)
            job = CaptureJob(
                tenant_id=scope.tenant_id,
                user_id=scope.user_id,
                conversation_id=conversation_id,
                user_messages=list(user_messages),
                created_by_key=scope.key_id,
                status=InferenceStatus.pending,
            )
            session.add(job)
            session.commit()
            return job

    def get_job(self, scope: UserScope, job_id: uuid.UUID) -> CaptureJob:
        with Session(self._engine) as session:
            job = session.exec(
                select(CaptureJob).where(
                    col(CaptureJob.tenant_id) == scope.tenant_id,
                    col(CaptureJob.user_id) == scope.user_id,
                    col(CaptureJob.id) == job_id,
                )
            ).first()
            if job is None:
                raise NotFound("no such conversation capture", code="capture_not_found")
            return job

    # -- jobs, the worker's side (system level) --------------------------------------------

    def claim_next(
        self, owner: str, lease: timedelta, now: datetime | None = None
    ) -> CaptureJob | None:
        return self._jobs.claim_next(owner, lease, now)

    def renew(
        self, job: CaptureJob, owner: str, lease: timedelta, now: datetime | None = None
    ) -> bool:
        return self._jobs.renew(job.id, owner, lease, now)

    def retry_later(self, job: CaptureJob, error: str, at: datetime | None, owner: str) -> None:
        """A job that fails for good drops the user's messages (nothing will read them)."""
        also: dict[str, list[str]] = {"user_messages": []} if at is None else {}
        self._jobs.retry_later(job.id, error, at, owner, **also)

    def release(self, owner: str) -> int:
        return self._jobs.release(owner)

    def next_due_at(self) -> datetime | None:
        return self._jobs.next_due_at()

    def finish(
        self,
        job: CaptureJob,
        owner: str,
        *,
        new: Sequence[Suggestion],
        accept: Sequence[Acceptance] = (),
        reinforce_instructions: Sequence[uuid.UUID],
        reinforce_suggestions: Sequence[uuid.UUID],
    ) -> list[Suggestion] | None:
        """Add the new suggestions (rows from `new_suggestions`), accept those `accept`
        names (through `_stage_accept`, the API's accept path) and count the repeats,
        in one transaction that also marks the job done and drops its messages, only
        while `owner` holds the lease. So a job reads `done` exactly when everything it
        auto-accepts is an instruction, and a crash before the commit leaves the job
        running under a lease that expires and is claimed again. None when the lease
        was lost (or the user deleted). Raises Conflict when another job added the same
        statement meanwhile (the unique text key), or when an instruction an accept
        supersedes moved: the retry plans again from what is stored then."""
        scope = scope_of(job)
        now = utcnow()
        rows = list(new)
        accepting = {a.suggestion_id: a for a in accept}
        if not accepting.keys() <= {row.id for row in rows}:
            raise ValueError("an auto-accepted suggestion must be one of the job's new ones")
        seen = [str(row.id) for row in rows] + [str(i) for i in reinforce_suggestions]
        with Session(self._engine, expire_on_commit=False) as session:
            done = session.exec(
                update(CaptureJob)
                .where(*CAPTURE_JOBS.held(job.id, owner))
                .values(
                    CAPTURE_JOBS.finished_values() | {"user_messages": [], "suggestion_ids": seen}
                )
            )
            if int(done.rowcount) != 1:
                session.rollback()
                return None
            session.add_all(rows)
            try:
                if reinforce_suggestions:
                    session.exec(
                        update(Suggestion)
                        .where(
                            *_suggestion_in_scope(scope),
                            col(Suggestion.id).in_(reinforce_suggestions),
                        )
                        .values(seen_count=col(Suggestion.seen_count) + 1, last_seen_at=now)
                    )
                if reinforce_instructions:
                    session.exec(
                        update(Instruction)
                        .where(
                            col(Instruction.tenant_id) == scope.tenant_id,
                            col(Instruction.user_id) == scope.user_id,
                            col(Instruction.instruction_id).in_(reinforce_instructions),
                            col(Instruction.valid_to).is_(None),
                        )
                        .values(seen_count=col(Instruction.seen_count) + 1, last_seen_at=now)
                    )
                if accepting:
                    session.flush()  # the suggestions exist before they are decided
                    rows = [
                        self._stage_accept(session, scope, row, accepting[row.id])
                        if row.id in accepting
                        else row
                        for row in rows
                    ]
                session.commit()
            except IntegrityError:
                session.rollback()
                raise Conflict(
                    "another writer got there first (the same suggestion, or a version of "
                    "the instruction an accepted one supersedes)",
                    code="concurrent_update",
                ) from None
            return rows

    # -- suggestions -------------------------------------------------------------------------

    def all_suggestions(self, scope: UserScope) -> list[Suggestion]:
        """Every suggestion of the user, whatever its status: what a new statement may
        repeat (an accepted one stands for the instruction it became)."""
        with Session(self._engine) as session:
            rows = session.exec(select(Suggestion).where(*_suggestion_in_scope(scope))).all()
            return list(rows)

    def suggestions(self, scope: UserScope, status: SuggestionStatus) -> list[Suggestion]:
        with Session(self._engine) as session:
            rows = session.exec(
                select(Suggestion)
                .where(*_suggestion_in_scope(scope), col(Suggestion.status) == status)
                .order_by(col(Suggestion.created_at), col(Suggestion.id))
            ).all()
            return list(rows)

    def get(self, scope: UserScope, suggestion_id: uuid.UUID) -> Suggestion:
        with Session(self._engine) as session:
            row = session.exec(
                select(Suggestion).where(
                    *_suggestion_in_scope(scope), col(Suggestion.id) == suggestion_id
                )
            ).first()
            if row is None:
                raise NotFound("no such suggestion", code="suggestion_not_found")
            return row

    def _decide(
        self,
        session: Session,
        scope: UserScope,
        suggestion: Suggestion,
        status: SuggestionStatus,
        instruction_id: uuid.UUID | None,
    ) -> Suggestion:
        """Move a pending suggestion to `status`, conditionally: of two decisions racing
        on one suggestion exactly one lands, the other gets 409."""
        now = utcnow()
        result = session.exec(
            update(Suggestion)
            .where(
                *_suggestion_in_scope(scope),
                col(Suggestion.id) == suggestion.id,
                col(Suggestion.status) == SuggestionStatus.pending,
            )
            .values(status=status, instruction_id=instruction_id, decided_at=now)
        )
        if int(result.rowcount) != 1:
            session.rollback()
            raise already_decided()
        record_user_change(session, scope, "suggestion", suggestion.id, status.value)
        return suggestion.model_copy(
            update={"status": status, "instruction_id": instruction_id, "decided_at": now}
        )

    def reject(self, scope: UserScope, suggestion_id: uuid.UUID) -> Suggestion:
        with Session(self._engine, expire_on_commit=False) as session:
            current = self.get(scope, suggestion_id)
            decided = self._decide(session, scope, current, SuggestionStatus.rejected, None)
            session.commit()
            return decided

    def accept(
        self, scope: UserScope, suggestion: Suggestion, acceptance: Acceptance
    ) -> Suggestion:
        """The suggestion is accepted and its instruction written, in one transaction;
        409 if the suggestion was decided or the instruction it supersedes moved."""
        with Session(self._engine, expire_on_commit=False) as session:
            decided = self._stage_accept(session, scope, suggestion, acceptance)
            commit_or_conflict(session, "instruction")
            return decided

    def _stage_accept(
        self, session: Session, scope: UserScope, suggestion: Suggestion, acceptance: Acceptance
    ) -> Suggestion:
        """The one accept, staged in the caller's transaction (the API's accept, or the
        job that auto-accepts): a new instruction, or the next version written on top
        of the one that was read (conditional: Conflict if it moved meanwhile)."""
        new = acceptance.instruction
        decided = self._decide(
            session, scope, suggestion, SuggestionStatus.accepted, new.instruction_id
        )
        read = acceptance.replaces
        if read is None:
            session.add(new)
            record_user_change(session, scope, "instruction", new.instruction_id, "created", 1)
        else:
            stage_next_version(
                session,
                scope,
                read,
                new,
                entity="instruction",
                item_id=read.instruction_id,
                now=new.valid_from,
            )
        return decided
