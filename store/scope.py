"""Scopes are the only way a repository learns whose data it may touch.

They come from the authenticated API key (never from a request body) and every
repository method takes one as a required argument and applies it in the query.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TenantScope:
    """What a key may see: one tenant, and optionally only one of its users."""

    tenant_id: uuid.UUID
    key_id: uuid.UUID | None = None
    bound_user_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class UserScope:
    """One end user inside one tenant, already checked against the key's binding."""

    tenant_id: uuid.UUID
    user_id: uuid.UUID
    external_id: str
    key_id: uuid.UUID | None = None
