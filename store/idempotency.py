"""Idempotency records: the first POST with a given `Idempotency-Key` claims the key
(an insert under a unique constraint on tenant, key, method and path, so racing
retries are settled by the database, on any replica), runs, and stores its response;
a retry with the same key and body gets that stored response instead of a second
write.

A claim whose request never finished (its process died) blocks the key until
`pending_s` have passed; then a retry may take it over. If the process died after
the write committed but before its response was stored, such a retry writes again:
the record lives in its own transaction, not in the write's."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import CursorResult, Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, delete, select

from store.clock import utcnow
from store.errors import Conflict, InvalidInput
from store.models import IdempotencyRecord
from store.scope import UserScope


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status: int
    body: str
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class Claim:
    """This request owns the key: it runs, then completes or releases the claim."""

    record_id: uuid.UUID
    claimed_at: datetime  # completing or releasing is conditional on it


@dataclass(frozen=True, slots=True)
class Request:
    scope: UserScope
    key: str
    method: str
    path: str
    body_hash: str


class IdempotencyRepository:
    def __init__(self, engine: Engine, *, ttl_s: float, pending_s: float) -> None:
        self._engine = engine
        self._ttl = timedelta(seconds=ttl_s)
        self._pending = timedelta(seconds=pending_s)

    def claim(self, request: Request) -> Claim | StoredResponse:
        """Own the key, or get the response stored for it. Raises InvalidInput
        (`idempotency_key_reused`) for the same key with another body, Conflict
        (`idempotency_key_in_use`) while the first request is still running."""
        for _ in range(3):
            outcome = self._try_claim(request)
            if outcome is not None:
                return outcome
        raise Conflict(
            "the Idempotency-Key is being claimed concurrently; retry",
            code="idempotency_key_in_use",
        )

    def _try_claim(self, request: Request) -> Claim | StoredResponse | None:
        now = utcnow()
        scope = request.scope
        record = IdempotencyRecord(
            tenant_id=scope.tenant_id,
            user_id=scope.user_id,
            key=request.key,
            method=request.method,
            path=request.path,
            request_hash=request.body_hash,
            created_at=now,
            expires_at=now + self._ttl,
        )
        with Session(self._engine, expire_on_commit=False) as session:
            # Cleanup on write: expired records go before a new one is claimed.
            session.exec(delete(IdempotencyRecord).where(col(IdempotencyRecord.expires_at) <= now))
            session.commit()
            session.add(record)
            try:
                session.commit()
                return Claim(record.id, now)
            except IntegrityError:
                session.rollback()
            existing = session.exec(
                select(IdempotencyRecord).where(
                    col(IdempotencyRecord.tenant_id) == scope.tenant_id,
                    col(IdempotencyRecord.key) == request.key,
                    col(IdempotencyRecord.method) == request.method,
                    col(IdempotencyRecord.path) == request.path,
                )
            ).first()
            if existing is None:  # it expired and was removed meanwhile: claim again
                return None
            if existing.expires_at <= now:
                session.delete(existing)
                session.commit()
                return None
            if existing.request_hash != request.body_hash:
                raise InvalidInput(
                    "this Idempotency-Key was used with a different request body; "
                    "use a new key for a new request",
                    code="idempotency_key_reused",
                )
            if existing.status is not None and existing.response_body is not None:
                return StoredResponse(
                    existing.status,
                    existing.response_body,
                    json.loads(existing.response_headers or "{}"),
                )
            if existing.created_at + self._pending > now:
                raise Conflict(
                    "a request with this Idempotency-Key is still running; retry shortly",
                    code="idempotency_key_in_use",
                )
            # Abandoned (its process died): take it over, if no one else did first.
            taken = cast(
                "CursorResult[Any]",
                session.execute(
                    sa.update(IdempotencyRecord)
                    .where(
                        col(IdempotencyRecord.id) == existing.id,
                        col(IdempotencyRecord.status).is_(None),
                        col(IdempotencyRecord.created_at) == existing.created_at,
                    )
                    .values(created_at=now, expires_at=now + self._ttl)
                ),
            )
            session.commit()
            return Claim(existing.id, now) if taken.rowcount == 1 else None

    def complete(self, claim: Claim, status: int, body: str, headers: dict[str, str]) -> None:
        """Store the response, unless the claim was taken over meanwhile."""
        with Session(self._engine) as session:
            session.execute(
                sa.update(IdempotencyRecord)
                .where(
                    col(IdempotencyRecord.id) == claim.record_id,
                    col(IdempotencyRecord.created_at) == claim.claimed_at,
                )
                .values(status=status, response_body=body, response_headers=json.dumps(headers))
            )
            session.commit()

    def release(self, claim: Claim) -> None:
        """Forget a claim whose request failed, so the client can retry it."""
        with Session(self._engine) as session:
            session.exec(
                delete(IdempotencyRecord).where(
                    col(IdempotencyRecord.id) == claim.record_id,
                    col(IdempotencyRecord.created_at) == claim.claimed_at,
                    col(IdempotencyRecord.status).is_(None),
                )
            )
            session.commit()
