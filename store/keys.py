"""Tenants and API keys. A key is `tlr_` + 43 random url-safe characters; its first
characters are a lookup prefix and only a SHA-256 of the whole key is stored. The
secret has 256 bits of entropy, so a fast hash is enough and a slow KDF buys nothing."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, col, select

from store.changes import record_change
from store.clock import utcnow
from store.errors import NotFound, Unauthorized
from store.models import ApiKey, AppUser, Tenant
from store.scope import TenantScope, UserScope

log = logging.getLogger("tailor")

KEY_PREFIX = "tlr_"
_LOOKUP_CHARS = 12  # of the key, including "tlr_"
_LAST_USED_RESOLUTION = timedelta(minutes=1)


def _hash(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def new_raw_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """The only moment the secret exists outside the caller: it is shown once."""

    key: ApiKey
    secret: str


class KeyRepository:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def create_tenant(self, name: str) -> tuple[Tenant, IssuedKey]:
        with Session(self._engine, expire_on_commit=False) as session:
            tenant = Tenant(name=name)
            session.add(tenant)
            session.flush()
            issued = self._issue(session, tenant.id, None, "bootstrap", None)
            record_change(
                session,
                tenant_id=tenant.id,
                user_id=None,
                key_id=None,
                entity="tenant",
                entity_id=tenant.id,
                action="created",
            )
            session.commit()
            return tenant, issued

    def issue(
        self,
        scope: TenantScope,
        *,
        name: str,
        external_user_id: str | None,
        expires_at: datetime | None,
    ) -> IssuedKey:
        with Session(self._engine, expire_on_commit=False) as session:
            user_id: uuid.UUID | None = None
            if external_user_id is not None:
                user = session.exec(
                    select(AppUser).where(
                        AppUser.tenant_id == scope.tenant_id,
                        AppUser.external_id == external_user_id,
                    )
                ).first()
                if user is None:
                    raise NotFound("no such user", code="user_not_found")
                user_id = user.id
            issued = self._issue(session, scope.tenant_id, user_id, name, expires_at)
            record_change(
                session,
                tenant_id=scope.tenant_id,
                user_id=user_id,
                key_id=scope.key_id,
                entity="api_key",
                entity_id=issued.key.id,
                action="created",
            )
            session.commit()
            return issued

    def _issue(
        self,
        session: Session,
        tenant_id: uuid.UUID,
        user_id: uuid.UUID | None,
        name: str,
        expires_at: datetime | None,
    ) -> IssuedKey:
        raw = new_raw_key()
        key = ApiKey(
            tenant_id=tenant_id,
            user_id=user_id,
            name=name,
            prefix=raw[:_LOOKUP_CHARS],
            key_hash=_hash(raw),
            expires_at=expires_at,
        )
        session.add(key)
        session.flush()
        return IssuedKey(key=key, secret=raw)

    def list_keys(self, scope: TenantScope) -> list[tuple[ApiKey, str | None]]:
        """Keys of the tenant with the external id of their bound user, if any."""
        with Session(self._engine) as session:
            rows = session.exec(
                select(ApiKey, AppUser.external_id)
                .join(AppUser, col(AppUser.id) == col(ApiKey.user_id), isouter=True)
                .where(ApiKey.tenant_id == scope.tenant_id)
                .order_by(col(ApiKey.created_at))
            ).all()
            return [(key, external) for key, external in rows]

    def revoke(self, scope: TenantScope, key_id: uuid.UUID) -> None:
        with Session(self._engine) as session:
            key = session.exec(
                select(ApiKey).where(ApiKey.id == key_id, ApiKey.tenant_id == scope.tenant_id)
            ).first()
            if key is None:
                raise NotFound("no such key", code="key_not_found")
            if key.revoked_at is None:
                key.revoked_at = utcnow()
                session.add(key)
                record_change(
                    session,
                    tenant_id=scope.tenant_id,
                    user_id=key.user_id,
                    key_id=scope.key_id,
                    entity="api_key",
                    entity_id=key.id,
                    action="revoked",
                )
                session.commit()

    def authenticate(self, raw_key: str) -> TenantScope:
        """Resolve a presented key to its scope; every failure reads the same."""
        return self.authenticate_until(raw_key)[0]

    def authenticate_until(self, raw_key: str) -> tuple[TenantScope, datetime | None]:
        """`authenticate`, and when the key expires (for a cache of scopes)."""
        failure = Unauthorized("missing, unknown, revoked or expired API key")
        if not raw_key.startswith(KEY_PREFIX) or len(raw_key) > 128:
            raise failure
        now = utcnow()
        with Session(self._engine) as session:
            key = session.exec(
                select(ApiKey).where(ApiKey.prefix == raw_key[:_LOOKUP_CHARS])
            ).first()
            if key is None or not hmac.compare_digest(key.key_hash, _hash(raw_key)):
                raise failure
            if key.revoked_at is not None or (key.expires_at is not None and key.expires_at <= now):
                raise failure
            stale = key.last_used_at is None or now - key.last_used_at > _LAST_USED_RESOLUTION
            scope = TenantScope(tenant_id=key.tenant_id, key_id=key.id, bound_user_id=key.user_id)
            expires_at = key.expires_at
        if stale:
            self._mark_used(scope, now)
        return scope, expires_at

    def _mark_used(self, scope: TenantScope, now: datetime) -> None:
        """A conditional UPDATE in its own transaction, best effort: the stamp has a
        minute's resolution, so a lost race (another request stamped it first, or
        SQLite refused a read transaction's upgrade while another writer committed)
        costs nothing, and must never fail the request that presented the key."""
        cutoff = now - _LAST_USED_RESOLUTION
        try:
            with Session(self._engine) as session:
                session.exec(
                    update(ApiKey)
                    .where(
                        col(ApiKey.id) == scope.key_id,
                        or_(col(ApiKey.last_used_at).is_(None), col(ApiKey.last_used_at) < cutoff),
                    )
                    .values(last_used_at=now)
                )
                session.commit()
        except OperationalError as exc:
            log.info("key last use not stamped: %s", type(exc).__name__)

    @staticmethod
    def unexpired(expires_at: datetime | None) -> bool:
        """The expiry rule `authenticate` applies, for a scope remembered since."""
        return expires_at is None or expires_at > utcnow()

    def revoke_session(
        self, caller: TenantScope, user: UserScope, key_id: uuid.UUID, *, name: str
    ) -> None:
        """End one profile-page session of `user`: a key with that name bound to them.
        A user-bound caller may end only its own session (signing out); anything else
        reads as missing, like another user's object."""
        query = select(ApiKey.id).where(
            ApiKey.id == key_id,
            ApiKey.tenant_id == user.tenant_id,
            ApiKey.user_id == user.user_id,
            ApiKey.name == name,
        )
        if caller.bound_user_id is not None:
            query = query.where(ApiKey.id == caller.key_id)
        with Session(self._engine) as session:
            found = session.exec(query).first()
        if found is None:
            raise NotFound("no such session", code="session_not_found")
        self.revoke(caller, key_id)
