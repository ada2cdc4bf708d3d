"""Scopes are the only way a repository learns whose data it may touch.

They come from the authenticated API key (never from a request body) and every
repository method takes one as a required argument and applies it in the query.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from store.errors import Forbidden


@dataclass(frozen=True, slots=True)
class TenantScope:
    """What a key may see: one tenant, and optionally only one of its users."""

    tenant_id: uuid.UUID
    key_id: uuid.UUID | None = None
    bound_user_id: uuid.UUID | None = None

    def require_tenant_wide(self) -> None:
        """Tenant-level operations (user lists, keys) are not for a user-bound key."""
        if self.bound_user_id is not None:
            raise Forbidden("this key is bound to one user", code="user_bound_key")


@dataclass(frozen=True, slots=True)
class UserScope:
    """One end user inside one tenant, already checked against the key's binding."""

    tenant_id: uuid.UUID
    user_id: uuid.UUID
    external_id: str
    key_id: uuid.UUID | None = None
