"""Few-shot preference examples. The prompt's embedding is stored with the row and
mirrored in the vector cache (collection "example") for nearest-prompt retrieval."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from store.changes import record_user_change
from store.clock import utcnow
from store.errors import NotFound
from store.item_refresh import ItemRows
from store.models import ExampleStatus, PreferenceExample
from store.scope import UserScope
from store.vector_index import Entry, decode_vector

COLLECTION = "example"
_NOT_FOUND = "no such example"


def _scoped(scope: UserScope) -> tuple[sa.ColumnElement[bool], ...]:
    return (
        col(PreferenceExample.tenant_id) == scope.tenant_id,
        col(PreferenceExample.user_id) == scope.user_id,
        col(PreferenceExample.valid_to).is_(None),
    )


class ExampleRepository:
    collection = COLLECTION

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def create(
        self,
        scope: UserScope,
        *,
        prompt: str,
        chosen: str,
        rejected: str,
        model: str,
        dim: int,
        embedding: bytes,
    ) -> PreferenceExample:
        with Session(self._engine, expire_on_commit=False) as session:
            row = PreferenceExample(
                tenant_id=scope.tenant_id,
                user_id=scope.user_id,
                prompt=prompt,
                chosen=chosen,
                rejected=rejected,
                created_by_key=scope.key_id,
                embedding_model=model,
                embedding_dim=dim,
                prompt_embedding=embedding,
            )
            session.add(row)
            record_user_change(session, scope, "example", row.id, "created")
            session.commit()
            return row

    def get(self, scope: UserScope, example_id: uuid.UUID) -> PreferenceExample:
        with Session(self._engine) as session:
            row = session.exec(
                select(PreferenceExample).where(*_scoped(scope), PreferenceExample.id == example_id)
            ).first()
            if row is None:
                raise NotFound(_NOT_FOUND, code="example_not_found")
            return row

    def by_ids(self, scope: UserScope, ids: Sequence[uuid.UUID]) -> list[PreferenceExample]:
        """Current examples among `ids`, in the order given (the caller's ranking)."""
        if not ids:
            return []
        with Session(self._engine) as session:
            rows = session.exec(
                select(PreferenceExample).where(
                    *_scoped(scope), col(PreferenceExample.id).in_(list(ids))
                )
            ).all()
        found = {row.id: row for row in rows}
        return [found[i] for i in ids if i in found]

    def page(
        self, scope: UserScope, *, limit: int, offset: int
    ) -> tuple[list[PreferenceExample], int]:
        with Session(self._engine) as session:
            total = session.exec(
                select(sa.func.count()).select_from(PreferenceExample).where(*_scoped(scope))
            ).one()
            rows = session.exec(
                select(PreferenceExample)
                .where(*_scoped(scope))
                .order_by(col(PreferenceExample.created_at), col(PreferenceExample.id))
                .offset(offset)
                .limit(limit)
            ).all()
            return list(rows), int(total)

    def delete(self, scope: UserScope, example_id: uuid.UUID) -> PreferenceExample:
        with Session(self._engine, expire_on_commit=False) as session:
            row = session.exec(
                select(PreferenceExample).where(*_scoped(scope), PreferenceExample.id == example_id)
            ).first()
            if row is None:
                raise NotFound(_NOT_FOUND, code="example_not_found")
            row.status = ExampleStatus.deleted
            row.valid_to = utcnow()
            session.add(row)
            record_user_change(session, scope, "example", row.id, "deleted")
            session.commit()
            return row

    # -- index maintenance --------------------------------------------------------------

    def _active(self, model: str) -> tuple[sa.ColumnElement[bool], ...]:
        return (
            col(PreferenceExample.valid_to).is_(None),
            col(PreferenceExample.embedding_model) == model,
        )

    def entries(
        self,
        user_ids: set[uuid.UUID] | None,
        *,
        model: str,
        item_ids: set[uuid.UUID] | None = None,
    ) -> Iterator[Entry]:
        query = sa.select(
            col(PreferenceExample.user_id),
            col(PreferenceExample.id),
            col(PreferenceExample.embedding_dim),
            col(PreferenceExample.prompt_embedding),
        ).where(*self._active(model))
        if user_ids is not None:
            query = query.where(col(PreferenceExample.user_id).in_(user_ids))
        if item_ids is not None:
            query = query.where(col(PreferenceExample.id).in_(item_ids))
        with Session(self._engine) as session:
            for user_id, row_id, dim, blob in session.execute(query):
                yield Entry(user_id, COLLECTION, row_id, 0, decode_vector(blob, dim))

    def count_rows(self, *, model: str) -> int:
        with Session(self._engine) as session:
            value = session.exec(
                select(sa.func.count()).select_from(PreferenceExample).where(*self._active(model))
            ).one()
            return int(value)

    def row_ids(self, *, model: str) -> Iterator[tuple[uuid.UUID, uuid.UUID]]:
        """(user, row) of every row `entries` would yield, without the vectors."""
        query = sa.select(col(PreferenceExample.user_id), col(PreferenceExample.id)).where(
            *self._active(model)
        )
        with Session(self._engine) as session:
            yield from session.execute(query).tuples()

    item_entity = "example"  # the change-log entity whose ids (= row ids) item_rows reads

    def item_rows(self, user_id: uuid.UUID, item_ids: set[uuid.UUID], *, model: str) -> ItemRows:
        """A change names the row itself: drop it, and put it back if still indexed."""
        return ItemRows(
            list(item_ids), list(self.entries({user_id}, model=model, item_ids=item_ids))
        )
