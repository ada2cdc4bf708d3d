"""The one way a versioned profile item changes: the current row is closed (valid_to,
superseded_by) and the next version added, in one transaction with its change-log row.
Two writers racing on the same item collide on (item id, version) and one gets 409."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Protocol

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from store.changes import record_user_change
from store.errors import Conflict
from store.scope import UserScope


class Versioned(Protocol):
    id: uuid.UUID
    version: int
    valid_to: datetime | None
    superseded_by: uuid.UUID | None


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
    old.valid_to = now
    old.superseded_by = new.id
    session.add(old)
    session.add(new)
    record_user_change(session, scope, entity, item_id, "updated", new.version)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise Conflict(
            f"the {entity} was changed concurrently; read it and retry", code="concurrent_update"
        ) from None
