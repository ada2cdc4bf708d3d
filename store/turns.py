"""The recent turns of each user, for "why did the assistant do that": which profile
items a turn used and why. One insert per turn, and the prune of the user's oldest
records beyond the kept number in the same transaction, so the table stays bounded
per user. Every query carries the user's scope."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
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


@dataclass(frozen=True, slots=True)
class PendingTurn:
    """A turn record waiting to be written, stamped with the moment of the turn."""

    scope: UserScope
    endpoint: str
    items: Sequence[dict[str, Any]]
    message: str | None
    at: datetime


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

    def record_many(self, turns: Sequence[PendingTurn], *, keep: int) -> None:
        """Several turns in one transaction (one commit, so one fsync on SQLite, for a
        whole batch), each user's prune once. All or nothing: a caller retries a
        failed batch in smaller parts (a user deleted meanwhile fails its own rows)."""
        if keep <= 0 or not turns:
            return
        with Session(self._engine) as session:
            session.add_all(
                TurnRecord(
                    tenant_id=turn.scope.tenant_id,
                    user_id=turn.scope.user_id,
                    endpoint=turn.endpoint,
                    items=list(turn.items),
                    message=turn.message,
                    at=turn.at,
                )
                for turn in turns
            )
            session.flush()
            # One statement prunes every user of the batch: rank each user's records
            # newest first, delete those past `keep`.
            ranked = (
                select(
                    col(TurnRecord.id).label("id"),
                    sa.func.row_number()
                    .over(
                        partition_by=col(TurnRecord.user_id),
                        order_by=(col(TurnRecord.at).desc(), col(TurnRecord.id).desc()),
                    )
                    .label("rank"),
                )
                .where(
                    col(TurnRecord.tenant_id).in_({t.scope.tenant_id for t in turns}),
                    col(TurnRecord.user_id).in_({t.scope.user_id for t in turns}),
                )
                .subquery()
            )
            session.exec(
                delete(TurnRecord)
                .where(col(TurnRecord.id).in_(select(ranked.c.id).where(ranked.c.rank > keep)))
                .execution_options(synchronize_session=False)
            )
            session.commit()

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
