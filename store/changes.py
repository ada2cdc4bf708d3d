"""The change log: appended inside each write's own transaction (so it commits or rolls
back with the write), read to replay what a snapshot has not seen, and shown as audit."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from store.models import ChangeLog
from store.scope import UserScope


def record_change(
    session: Session,
    *,
    tenant_id: uuid.UUID,
    user_id: uuid.UUID | None,
    key_id: uuid.UUID | None,
    entity: str,
    entity_id: uuid.UUID,
    action: str,
    version: int | None = None,
) -> None:
    session.add(
        ChangeLog(
            tenant_id=tenant_id,
            user_id=user_id,
            key_id=key_id,
            entity=entity,
            entity_id=entity_id,
            action=action,
            version=version,
        )
    )


class ChangeLogReader:
    """System-level reads for index maintenance; never reachable from a request."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def last_seq(self) -> int:
        with Session(self._engine) as session:
            value = session.exec(select(sa.func.max(ChangeLog.seq))).one()
            return int(value or 0)

    def users_changed_since(self, seq: int) -> set[uuid.UUID]:
        with Session(self._engine) as session:
            rows: Sequence[uuid.UUID | None] = session.exec(
                select(ChangeLog.user_id).where(col(ChangeLog.seq) > seq).distinct()
            ).all()
            return {row for row in rows if row is not None}


def record_user_change(
    session: Session,
    scope: UserScope,
    entity: str,
    entity_id: uuid.UUID,
    action: str,
    version: int | None = None,
) -> None:
    """`record_change` for a write inside one user's profile."""
    record_change(
        session,
        tenant_id=scope.tenant_id,
        user_id=scope.user_id,
        key_id=scope.key_id,
        entity=entity,
        entity_id=entity_id,
        action=action,
        version=version,
    )
