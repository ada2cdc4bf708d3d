"""Bringing stored instructions to the current version of write-time derivation.

A row's kind and domains are derived when it is written (personalization/applicability.py)
and kept, so a better derivation reaches existing rows only through this backfill. It
runs once per derivation version: at start-up (service/ports.py) and by `tailor
rederive`. Replica-safe through the database, not a lock: each row is updated only while
it is still the current version and still derived (a conditional update; a row a user
pinned, edited or deleted meanwhile is left alone, its new version derived afresh), two
replicas running it at once compute the same values, and the finished version is one
primary-key row (`derivation_run`). Only derived fields change, in place: the text is
the same, so it is not a new version. Each updated row is logged as a change so every
replica's per-user cache reloads that user."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from store.changes import record_change
from store.models import DerivationRun, Instruction, InstructionKind, SetBy
from store.vector_index import Vector, decode_vector

BATCH = 500


@dataclass(frozen=True, slots=True)
class Rederived:
    kind: InstructionKind
    domains: list[str]


# (text, text vector, kind pinned by the user or None) -> what derivation says now
Derive = Callable[[str, Vector, InstructionKind | None], Rederived]


def _derived(column: Any) -> sa.ColumnElement[bool]:
    """Derived, or from before kinds existed (NULL): a column of the table or the model."""
    return sa.or_(column.is_(None), column == SetBy.derived.value)


def finished(engine: Engine, version: str) -> bool:
    with Session(engine) as session:
        return session.get(DerivationRun, version) is not None


def rederive(engine: Engine, derive: Derive, version: str, *, embedding_model: str) -> int:
    """Re-derive every current row written with `embedding_model`'s vectors whose kind or
    domains are derived; returns how many rows changed. Idempotent."""
    updated = 0
    after = uuid.UUID(int=0)
    while True:
        with Session(engine) as session:
            rows = session.exec(
                select(Instruction)
                .where(
                    col(Instruction.valid_to).is_(None),
                    col(Instruction.embedding_model) == embedding_model,
                    col(Instruction.id) > after,
                    sa.or_(
                        _derived(col(Instruction.kind_set_by)),
                        _derived(col(Instruction.applicability_set_by)),
                    ),
                )
                .order_by(col(Instruction.id))
                .limit(BATCH)
            ).all()
            if not rows:
                break
            after = rows[-1].id
            for row in rows:
                updated += _update(session, row, derive)
            session.commit()
    record_finished(engine, version, updated)
    return updated


def _update(session: Session, row: Instruction, derive: Derive) -> int:
    kind_pinned = row.kind_set_by == SetBy.user
    where_pinned = row.applicability_set_by == SetBy.user
    fresh = derive(
        row.text,
        decode_vector(row.text_embedding, row.embedding_dim),
        row.kind if kind_pinned else None,
    )
    values: dict[str, object] = {}
    if not kind_pinned and (row.kind != fresh.kind or row.kind_set_by is None):
        values |= {"kind": fresh.kind.value, "kind_set_by": SetBy.derived.value}
    if not where_pinned and (row.domains != fresh.domains or row.applicability_set_by is None):
        values |= {"domains": fresh.domains, "applicability_set_by": SetBy.derived.value}
        if row.typical_requests is None:
            values["typical_requests"] = []
    if not values:
        return 0
    table = Instruction.__table__  # type: ignore[attr-defined]
    guard = [table.c.id == row.id, table.c.valid_to.is_(None)]
    if "kind" in values:
        guard.append(_derived(table.c.kind_set_by))
    if "domains" in values:
        guard.append(_derived(table.c.applicability_set_by))
    done = session.execute(sa.update(table).where(*guard).values(**values))
    if done.rowcount != 1:  # type: ignore[attr-defined]
        return 0  # written, pinned or deleted meanwhile: its own write derived it
    record_change(
        session,
        tenant_id=row.tenant_id,
        user_id=row.user_id,
        key_id=None,
        entity="instruction",
        entity_id=row.instruction_id,
        action="rederived",
        version=row.version,
    )
    return 1


def record_finished(engine: Engine, version: str, updated: int) -> None:
    """The first replica to finish records it; a second one finishing at once loses the
    primary-key race, which is fine: they did the same work."""
    try:
        with Session(engine) as session:
            session.add(DerivationRun(version=version, updated=updated))
            session.commit()
    except IntegrityError:
        pass
