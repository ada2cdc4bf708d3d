"""End users. `resolve` is the gate every per-user route passes: it applies the tenant
and the key's user binding inside the query, so someone else's user reads as missing."""

from __future__ import annotations

import contextlib
import uuid

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, delete, select
from sqlmodel.sql.expression import SelectOfScalar

from store.changes import record_change
from store.errors import Conflict, Forbidden, NotFound
from store.models import AppUser, ChangeLog
from store.scope import TenantScope, UserScope

_NOT_FOUND = "no such user"

# A user by (tenant, external id) with their latest change sequence; `_RESOLVE_BOUND`
# also applies a user-bound key's binding. Built once: see `resolve_with_stamp`.
_RESOLVE = sa.select(
    col(AppUser.id),
    col(AppUser.tenant_id),
    col(AppUser.external_id),
    sa.select(sa.func.max(ChangeLog.seq))
    .where(col(ChangeLog.user_id) == col(AppUser.id))
    .scalar_subquery(),
).where(
    col(AppUser.tenant_id) == sa.bindparam("tenant_id"),
    col(AppUser.external_id) == sa.bindparam("external_id"),
)
_RESOLVE_BOUND = _RESOLVE.where(col(AppUser.id) == sa.bindparam("bound_user_id"))


class UserRepository:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def _scoped(self, scope: TenantScope, external_id: str) -> SelectOfScalar[AppUser]:
        query = select(AppUser).where(
            AppUser.tenant_id == scope.tenant_id, AppUser.external_id == external_id
        )
        if scope.bound_user_id is not None:
            query = query.where(AppUser.id == scope.bound_user_id)
        return query

    def create(self, scope: TenantScope, external_id: str) -> AppUser:
        scope.require_tenant_wide()
        with Session(self._engine, expire_on_commit=False) as session:
            user = AppUser(tenant_id=scope.tenant_id, external_id=external_id)
            session.add(user)
            try:
                session.flush()
            except IntegrityError:
                session.rollback()
                raise Conflict("a user with this id exists", code="user_exists") from None
            record_change(
                session,
                tenant_id=scope.tenant_id,
                user_id=user.id,
                key_id=scope.key_id,
                entity="user",
                entity_id=user.id,
                action="created",
            )
            session.commit()
            return user

    def get(self, scope: TenantScope, external_id: str) -> AppUser:
        with Session(self._engine) as session:
            user = session.exec(self._scoped(scope, external_id)).first()
            if user is None:
                raise NotFound(_NOT_FOUND, code="user_not_found")
            return user

    def resolve(self, scope: TenantScope, external_id: str) -> UserScope:
        user = self.get(scope, external_id)
        return UserScope(
            tenant_id=user.tenant_id,
            user_id=user.id,
            external_id=user.external_id,
            key_id=scope.key_id,
        )

    def resolve_with_stamp(self, scope: TenantScope, external_id: str) -> tuple[UserScope, int]:
        """`resolve` and the user's latest change sequence (0 for none) in one query, for
        a turn: the stamp tells the vector cache whether to reload the user, so a turn
        needs no second round trip for it (see IndexManager.ensure_fresh).

        Every turn runs it, so the statement is built once (bound parameters) and runs
        on a Core connection: building the ORM select and its session per call cost
        more than the indexed read itself."""
        bound = scope.bound_user_id is not None
        params = {"tenant_id": scope.tenant_id, "external_id": external_id}
        if bound:
            params["bound_user_id"] = scope.bound_user_id
        with self._engine.connect() as connection:
            row = connection.execute(_RESOLVE_BOUND if bound else _RESOLVE, params).first()
        if row is None:
            raise NotFound(_NOT_FOUND, code="user_not_found")
        user_id, tenant_id, external, seq = row
        user = UserScope(
            tenant_id=tenant_id, user_id=user_id, external_id=external, key_id=scope.key_id
        )
        return user, int(seq or 0)

    def resolve_or_create(self, scope: TenantScope, external_id: str) -> UserScope:
        """For a tenant-wide key, an unknown user is created (the operator turned this on
        for apps that never call POST /v1/users). Two first turns at once race on the
        unique (tenant, external id) constraint; the loser reads the winner's row. A
        user-bound key reaches its own user only, so for it a missing user stays 404."""
        try:
            return self.resolve(scope, external_id)
        except NotFound:
            if scope.bound_user_id is not None:
                raise
        with contextlib.suppress(Conflict):  # created by a concurrent first turn
            self.create(scope, external_id)
        return self.resolve(scope, external_id)

    def resolve_bound(self, scope: TenantScope) -> UserScope:
        """The user a user-bound key is bound to."""
        if scope.bound_user_id is None:
            raise Forbidden("this key is not bound to a user", code="not_user_bound")
        with Session(self._engine) as session:
            user = session.exec(
                select(AppUser).where(
                    AppUser.tenant_id == scope.tenant_id, AppUser.id == scope.bound_user_id
                )
            ).first()
            if user is None:
                raise NotFound(_NOT_FOUND, code="user_not_found")
            return UserScope(
                tenant_id=user.tenant_id,
                user_id=user.id,
                external_id=user.external_id,
                key_id=scope.key_id,
            )

    def page(self, scope: TenantScope, *, limit: int, offset: int) -> tuple[list[AppUser], int]:
        scope.require_tenant_wide()
        with Session(self._engine) as session:
            where = AppUser.tenant_id == scope.tenant_id
            total = session.exec(select(sa.func.count()).select_from(AppUser).where(where)).one()
            users = session.exec(
                select(AppUser)
                .where(where)
                .order_by(col(AppUser.created_at), col(AppUser.id))
                .offset(offset)
                .limit(limit)
            ).all()
            return list(users), int(total)

    def delete(self, scope: TenantScope, external_id: str) -> uuid.UUID:
        """Remove the user and, by cascade, everything they own; the change log keeps
        one tombstone (ids only) so a replay drops the user from every index."""
        with Session(self._engine) as session:
            user = session.exec(self._scoped(scope, external_id)).first()
            if user is None:
                raise NotFound(_NOT_FOUND, code="user_not_found")
            user_id = user.id
            session.delete(user)
            # The tombstone first, then the user's older rows: on SQLite a new seq is
            # max(seq) + 1, so deleting the newest rows first would hand the tombstone
            # a seq other replicas' followers have already passed, and they would never
            # learn of the delete.
            tombstone = record_change(
                session,
                tenant_id=scope.tenant_id,
                user_id=user_id,
                key_id=scope.key_id,
                entity="user",
                entity_id=user_id,
                action="deleted",
            )
            session.flush()
            session.exec(
                delete(ChangeLog).where(
                    col(ChangeLog.user_id) == user_id, col(ChangeLog.seq) < tombstone.seq
                )
            )
            session.commit()
            return user_id
