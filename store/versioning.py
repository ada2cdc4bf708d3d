"""The one way a versioned profile item changes: the version the writer read is closed
(valid_to, superseded_by) and the next version added, in one transaction with its
change-log row.

The close is a conditional UPDATE of the row that was read, `WHERE id = :read AND
valid_to IS NULL`, so the database, not a process lock, settles a race between
replicas: the writer whose read is no longer current updates no row and gets 409
`concurrent_update`. A partial unique index (one row with valid_to IS NULL per item)
backs it up, and (item id, version) is unique as well. Everything the new version
holds (text, vectors, status) is derived from the row that was read, so what is
written always belongs to the version it replaces."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from store.changes import record_user_change
from store.errors import Conflict, PreconditionFailed
from store.scope import UserScope


class Versioned(Protocol):
    id: uuid.UUID
    version: int
    valid_to: datetime | None
    superseded_by: uuid.UUID | None


def lost_race(entity: str) -> Conflict:
    return Conflict(
        f"the {entity} was changed concurrently; read it again and retry",
        code="concurrent_update",
    )


def check_expected(entity: str, current: Versioned, expected: Collection[int] | None) -> None:
    """`expected` comes from If-Match: the versions the client is willing to change
    (None: any). The check is made on the row that will be closed conditionally, so a
    version that passes it is still current when the write lands, or the write fails."""
    if expected is not None and current.version not in expected:
        raise PreconditionFailed(
            f"the {entity} is at version {current.version}, not the one If-Match names; "
            "read it again (GET returns the current ETag) and retry"
        )


def close_version(
    session: Session,
    old: Versioned,
    *,
    entity: str,
    now: datetime,
    superseded_by: uuid.UUID | None = None,
    **also: Any,
) -> None:
    """Close `old` if it is still current, inside the caller's transaction; `also` sets
    more columns on it (a delete sets status). Raises Conflict when another writer
    closed it first. `old` is detached from the session so the ORM cannot write it
    again unconditionally; its attributes are updated for the caller's return value."""
    table = sa.inspect(type(old)).local_table
    values: dict[str, Any] = {"valid_to": now, "superseded_by": superseded_by, **also}
    if old in session:
        session.expunge(old)
    result = session.execute(
        sa.update(table)
        .where(table.c.id == old.id, table.c.valid_to.is_(None))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        session.rollback()
        raise lost_race(entity)
    for name, value in values.items():
        setattr(old, name, value)


def stage_next_version(
    session: Session,
    scope: UserScope,
    old: Versioned,
    new: Versioned,
    *,
    entity: str,
    item_id: uuid.UUID,
    now: datetime,
) -> None:
    """Close `old` and add `new` (and its change-log row) without committing, for a
    transaction that writes more (a promote adds the instruction in the same one)."""
    close_version(session, old, entity=entity, now=now, superseded_by=new.id)
    session.add(new)
    record_user_change(session, scope, entity, item_id, "updated", new.version)


def commit_or_conflict(session: Session, entity: str) -> None:
    """Commit; a unique-index violation means another writer won the race."""
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise lost_race(entity) from None


def commit_next_version(
    session: Session,
    scope: UserScope,
    old: Versioned,
    new: Versioned,
    *,
    entity: str,
    item_id: uuid.UUID,
    now: datetime,
) -> None:
    stage_next_version(session, scope, old, new, entity=entity, item_id=item_id, now=now)
    commit_or_conflict(session, entity)
