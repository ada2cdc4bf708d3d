"""The change log: appended inside each write's own transaction (so it commits or rolls
back with the write), read to replay what a snapshot has not seen, and shown as audit."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

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
) -> ChangeLog:
    row = ChangeLog(
        tenant_id=tenant_id,
        user_id=user_id,
        key_id=key_id,
        entity=entity,
        entity_id=entity_id,
        action=action,
        version=version,
    )
    session.add(row)
    return row


@dataclass(frozen=True, slots=True)
class Change:
    """One change-log row as the replicas' followers see it: ids and action only."""

    seq: int
    user_id: uuid.UUID | None
    entity: str
    action: str
    entity_id: uuid.UUID | None = None  # the item changed (None: not read)

    @property
    def deletes_user(self) -> bool:
        return self.entity == "user" and self.action == "deleted"


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

    def user_seq(self, user_id: uuid.UUID) -> int:
        """The user's latest change (0 for none): one probe of ix_change_log_user_seq,
        cheap enough for every turn."""
        with Session(self._engine) as session:
            value = session.exec(
                select(sa.func.max(ChangeLog.seq)).where(col(ChangeLog.user_id) == user_id)
            ).one()
            return int(value or 0)

    def user_seqs(self, user_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, int]:
        """Latest change per user; users without one are absent."""
        wanted = list(user_ids)
        if not wanted:
            return {}
        with Session(self._engine) as session:
            rows = session.exec(
                select(ChangeLog.user_id, sa.func.max(ChangeLog.seq))
                .where(col(ChangeLog.user_id).in_(wanted))
                .group_by(col(ChangeLog.user_id))
            ).all()
            return {user: int(seq or 0) for user, seq in rows if user is not None}

    def changes_in(self, seqs: Sequence[int]) -> list[Change]:
        """The changes among these seqs that are visible now (gaps being awaited)."""
        if not seqs:
            return []
        query = _CHANGES.where(col(ChangeLog.seq).in_(list(seqs)))
        return self._read(query.order_by(col(ChangeLog.seq)))

    def changes_after(self, seq: int, *, upto: int | None = None, limit: int) -> list[Change]:
        """Changes with a sequence above `seq` (and at most `upto`), oldest first."""
        query = _CHANGES.where(col(ChangeLog.seq) > seq)
        if upto is not None:
            query = query.where(col(ChangeLog.seq) <= upto)
        return self._read(query.order_by(col(ChangeLog.seq)).limit(limit))

    def user_changes_after(self, user_id: uuid.UUID, seq: int, *, limit: int) -> list[Change]:
        """One user's changes above `seq`, oldest first: a range of ix_change_log_user_seq,
        so a turn can learn which of the user's items moved since its cache entry."""
        query = _CHANGES.where(col(ChangeLog.user_id) == user_id, col(ChangeLog.seq) > seq)
        return self._read(query.order_by(col(ChangeLog.seq)).limit(limit))

    def _read(self, query: Any) -> list[Change]:
        with Session(self._engine) as session:
            rows = session.execute(query).all()
            return [
                Change(int(seq or 0), user, entity, action, entity_id)
                for seq, user, entity, action, entity_id in rows
            ]


_CHANGES = sa.select(
    col(ChangeLog.seq),
    col(ChangeLog.user_id),
    col(ChangeLog.entity),
    col(ChangeLog.action),
    col(ChangeLog.entity_id),
)


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
