"""Preferences inferred from edits, versioned like standing instructions: a change
writes a new version and closes the old one."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from store.changes import record_user_change
from store.clock import utcnow
from store.errors import NotFound
from store.models import Edit, InferredPreference, PreferenceStatus
from store.scope import UserScope
from store.versioning import check_expected, commit_next_version

_NOT_FOUND = "no such preference"
APPLICABLE = (PreferenceStatus.suggested, PreferenceStatus.accepted)


def _in_scope(scope: UserScope) -> tuple[sa.ColumnElement[bool], ...]:
    return (
        col(InferredPreference.tenant_id) == scope.tenant_id,
        col(InferredPreference.user_id) == scope.user_id,
    )


def _current_row(
    session: Session, scope: UserScope, preference_id: uuid.UUID
) -> InferredPreference:
    row = session.exec(
        select(InferredPreference).where(
            *_in_scope(scope),
            col(InferredPreference.preference_id) == preference_id,
            col(InferredPreference.valid_to).is_(None),
        )
    ).first()
    if row is None:
        raise NotFound(_NOT_FOUND, code="preference_not_found")
    return row


def new_preference(
    session: Session, scope: UserScope, *, text: str, status: PreferenceStatus, edit_id: uuid.UUID
) -> InferredPreference:
    """Add a first version inside the caller's transaction (the edit's or the worker's)."""
    row = InferredPreference(
        preference_id=uuid.uuid4(),
        tenant_id=scope.tenant_id,
        user_id=scope.user_id,
        text=text,
        status=status,
        source_edit_id=edit_id,
        created_by_key=scope.key_id,
    )
    session.add(row)
    record_user_change(session, scope, "preference", row.preference_id, "created", 1)
    return row


def next_preference_version(
    scope: UserScope,
    old: InferredPreference,
    *,
    now: datetime,
    text: str | None = None,
    status: PreferenceStatus | None = None,
    promoted_instruction_id: uuid.UUID | None = None,
) -> InferredPreference:
    """The version after `old` (not yet added to a session): `old` plus the changes."""
    return InferredPreference(
        preference_id=old.preference_id,
        version=old.version + 1,
        tenant_id=old.tenant_id,
        user_id=old.user_id,
        text=text if text is not None else old.text,
        status=status if status is not None else old.status,
        source_edit_id=old.source_edit_id,
        promoted_instruction_id=promoted_instruction_id or old.promoted_instruction_id,
        created_by_key=scope.key_id,
        created_at=old.created_at,
        valid_from=now,
    )


class PreferenceRepository:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def get(self, scope: UserScope, preference_id: uuid.UUID) -> InferredPreference:
        with Session(self._engine) as session:
            return _current_row(session, scope, preference_id)

    def page(
        self, scope: UserScope, *, status: PreferenceStatus | None, limit: int, offset: int
    ) -> tuple[list[InferredPreference], int]:
        conditions = [*_in_scope(scope), col(InferredPreference.valid_to).is_(None)]
        if status is not None:
            conditions.append(col(InferredPreference.status) == status)
        with Session(self._engine) as session:
            total = session.exec(
                select(sa.func.count()).select_from(InferredPreference).where(*conditions)
            ).one()
            rows = session.exec(
                select(InferredPreference)
                .where(*conditions)
                .order_by(col(InferredPreference.created_at), col(InferredPreference.id))
                .offset(offset)
                .limit(limit)
            ).all()
            return list(rows), int(total)

    def history(self, scope: UserScope, preference_id: uuid.UUID) -> list[InferredPreference]:
        with Session(self._engine) as session:
            rows = session.exec(
                select(InferredPreference)
                .where(*_in_scope(scope), col(InferredPreference.preference_id) == preference_id)
                .order_by(col(InferredPreference.version))
            ).all()
            if not rows:
                raise NotFound(_NOT_FOUND, code="preference_not_found")
            return list(rows)

    def revise(
        self,
        scope: UserScope,
        preference_id: uuid.UUID,
        *,
        text: str | None = None,
        status: PreferenceStatus | None = None,
        expected: Collection[int] | None = None,
    ) -> InferredPreference:
        """Write the next version; the version read here is closed only if it is still
        current (409 otherwise). `expected` (from If-Match) are the versions accepted."""
        now = utcnow()
        with Session(self._engine, expire_on_commit=False) as session:
            old = _current_row(session, scope, preference_id)
            check_expected("preference", old, expected)
            new = next_preference_version(scope, old, now=now, text=text, status=status)
            commit_next_version(
                session, scope, old, new, entity="preference", item_id=preference_id, now=now
            )
            return new

    def applicable_for_edits(
        self, scope: UserScope, edit_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, InferredPreference]:
        """Edit id → its preference's current version, where that may still be applied."""
        if not edit_ids:
            return {}
        with Session(self._engine) as session:
            rows = session.exec(
                select(Edit.id, InferredPreference)
                .join(
                    InferredPreference,
                    col(InferredPreference.preference_id) == col(Edit.preference_id),
                )
                .where(
                    col(Edit.tenant_id) == scope.tenant_id,
                    col(Edit.user_id) == scope.user_id,
                    col(Edit.id).in_(list(edit_ids)),
                    *_in_scope(scope),
                    col(InferredPreference.valid_to).is_(None),
                    col(InferredPreference.status).in_(APPLICABLE),
                )
            ).all()
            return {edit_id: pref for edit_id, pref in rows}  # noqa: C416 (typed rows)
