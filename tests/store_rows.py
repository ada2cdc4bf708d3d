"""Rows that tests of the store and its workers start from, written straight into SQL."""

from __future__ import annotations

from sqlmodel import Session

from store.models import AppUser, Tenant
from store.scope import UserScope


def add_tenant_user(session: Session, external_id: str = "alice") -> UserScope:
    """A tenant "acme" and one user of it, flushed (the caller commits with what it adds)."""
    tenant = Tenant(name="acme")
    session.add(tenant)
    session.flush()
    user = AppUser(tenant_id=tenant.id, external_id=external_id)
    session.add(user)
    session.flush()
    return UserScope(tenant_id=tenant.id, user_id=user.id, external_id=external_id)
