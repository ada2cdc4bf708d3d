"""Tenants (admin token) and API keys (tenant-wide key)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response

from service.deps import AdminDep, KeysDep, PortsDep, TenantWideScopeDep
from service.schemas import (
    ErrorResponse,
    KeyCreate,
    KeyCreated,
    KeyPublic,
    TenantCreate,
    TenantCreated,
    TenantPublic,
)
from store.errors import InvalidInput
from store.keys import IssuedKey
from store.models import ApiKey

router = APIRouter(prefix="/v1", responses={401: {"model": ErrorResponse}})


def key_public(key: ApiKey, external_user_id: str | None) -> KeyPublic:
    return KeyPublic(
        id=key.id,
        name=key.name,
        prefix=key.prefix,
        user_id=external_user_id,
        created_at=key.created_at,
        expires_at=key.expires_at,
        revoked_at=key.revoked_at,
        last_used_at=key.last_used_at,
    )


def key_created(issued: IssuedKey, external_user_id: str | None) -> KeyCreated:
    return KeyCreated(**key_public(issued.key, external_user_id).model_dump(), key=issued.secret)


@router.post(
    "/tenants",
    status_code=201,
    response_model=TenantCreated,
    tags=["admin"],
    summary="Create a tenant and its first API key (admin token)",
    description=(
        "Authenticated with `TAILOR_ADMIN_TOKEN`, not an API key (403 `admin_disabled` when it is "
        "not set, 401 when it does not match). The response holds the tenant's first tenant-wide "
        "key; its secret is shown only here."
    ),
    responses={403: {"model": ErrorResponse}},
)
def create_tenant(body: TenantCreate, keys: KeysDep, _admin: AdminDep) -> TenantCreated:
    tenant, issued = keys.create_tenant(body.name)
    return TenantCreated(
        tenant=TenantPublic(id=tenant.id, name=tenant.name, created_at=tenant.created_at),
        api_key=key_created(issued, None),
    )


@router.post(
    "/keys",
    status_code=201,
    response_model=KeyCreated,
    tags=["keys"],
    summary="Issue an API key, optionally bound to one end user; the secret is shown once",
    description=(
        "Needs a tenant-wide key. With `user_id` the key can touch only that user's profile and "
        "cannot reach tenant-wide routes (for a browser or mobile client); 404 if the user does "
        "not exist. `expires_at` must carry a timezone (422 `naive_datetime`)."
    ),
    responses={403: {"model": ErrorResponse}, 404: {"model": ErrorResponse}},
)
def create_key(body: KeyCreate, scope: TenantWideScopeDep, keys: KeysDep) -> KeyCreated:
    if body.expires_at is not None and body.expires_at.tzinfo is None:
        raise InvalidInput("expires_at must carry a timezone", code="naive_datetime")
    issued = keys.issue(
        scope, name=body.name, external_user_id=body.user_id, expires_at=body.expires_at
    )
    return key_created(issued, body.user_id)


@router.get(
    "/keys",
    response_model=list[KeyPublic],
    tags=["keys"],
    summary="List the tenant's keys",
    description=(
        "Needs a tenant-wide key. Secrets are never shown again: each key is listed by id, name "
        "and prefix, with its bound user, expiry, revocation and last use."
    ),
)
def list_keys(scope: TenantWideScopeDep, keys: KeysDep) -> list[KeyPublic]:
    return [key_public(key, external) for key, external in keys.list_keys(scope)]


@router.delete(
    "/keys/{key_id}",
    status_code=204,
    tags=["keys"],
    summary="Revoke a key (at once here, on other replicas within TAILOR_KEY_CACHE_TTL_S)",
    description=(
        "Needs a tenant-wide key. Revoking is permanent; a request made with the key afterwards "
        "answers 401 (on another replica of the same database, within "
        "`TAILOR_KEY_CACHE_TTL_S` seconds, default 2). 404 for a key of another tenant or none."
    ),
    responses={404: {"model": ErrorResponse}},
)
def revoke_key(
    key_id: uuid.UUID, scope: TenantWideScopeDep, keys: KeysDep, ports: PortsDep
) -> Response:
    keys.revoke(scope, key_id)
    ports.key_cache.forget(key_id)
    return Response(status_code=204)
