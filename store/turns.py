"""The recent turns of each user, for "why did the assistant do that": which profile
items a turn used and why. One insert per turn, and the prune of the user's oldest
records beyond the kept number in the same transaction, so the table stays bounded
per user. Every query carries the user's scope."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, delete, select

from store.models import TurnRecord
from store.scope import UserScope


def _in_scope(scope: UserScope) -> tuple[sa.ColumnElement[bool], sa.ColumnElement[bool]]:
    return (
        col(TurnRecord.tenant_id) == scope.tenant_id,
        col(TurnRecord.user_id) == scope.user_id,
    )


class TurnRepository:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def record(
        self,
        scope: UserScope,
        *,
        endpoint: str,
        items: Sequence[dict[str, Any]],
        message: str | None,
        keep: int,
    ) -> TurnRecord | None:
        """Add the turn and drop the user's records beyond the newest `keep` (0 records
        nothing). Two replicas pruning at once may each keep a row the other dropped;
        the next turn's prune settles it, so the bound holds to within a turn or two."""
        if keep <= 0:
            return None
        row = TurnRecord(
            tenant_id=scope.tenant_id,
            user_id=scope.user_id,
            endpoint=endpoint,
            items=list(items),
            message=message,
        )
        with Session(self._engine, expire_on_commit=False) as session:
            session.add(row)
            session.flush()
            newest = (
                select(col(TurnRecord.id))
                .where(*_in_scope(scope))
                .order_by(col(TurnRecord.at).desc(), col(TurnRecord.id).desc())
                .limit(keep)
            )
            session.exec(
                delete(TurnRecord).where(*_in_scope(scope), col(TurnRecord.id).not_in(newest))
            )
            session.commit()
            return row

    def recent(self, scope: UserScope, *, limit: int) -> list[TurnRecord]:
        """Newest first."""
        with Session(self._engine) as session:
            rows = session.exec(
                select(TurnRecord)
                .where(*_in_scope(scope))
                .order_by(col(TurnRecord.at).desc(), col(TurnRecord.id).desc())
                .limit(limit)
            ).all()
            return list(rows)
