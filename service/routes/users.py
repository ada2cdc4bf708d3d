from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from service.deps import ScopeDep, TenantWideScopeDep, UserIdPath, UsersDep, WriterDep
from service.schemas import ErrorResponse, UserCreate, UserList, UserPublic
from store.models import AppUser

router = APIRouter(
    prefix="/v1/users",
    tags=["users"],
    responses={401: {"model": ErrorResponse}, 404: {"model": ErrorResponse}},
)


def user_public(user: AppUser) -> UserPublic:
    return UserPublic(id=user.external_id, created_at=user.created_at)


@router.post(
    "",
    status_code=201,
    response_model=UserPublic,
    summary="Register an end user by the app's own id",
    description=(
        "Needs a tenant-wide key (403 for a user-bound one). The id is the app's own (1-128 "
        "characters: letters, digits and `._:@-`); 409 `user_exists` if the tenant already has "
        "it. Every profile route addresses the user by this id."
    ),
    responses={409: {"model": ErrorResponse}, 403: {"model": ErrorResponse}},
)
def create_user(body: UserCreate, scope: TenantWideScopeDep, users: UsersDep) -> UserPublic:
    return user_public(users.create(scope, body.id))


@router.get(
    "",
    response_model=UserList,
    summary="List the tenant's end users",
    description=(
        "Needs a tenant-wide key. Oldest first, paged with `limit` (1-500, default 100) and "
        "`offset`; `total` counts them all."
    ),
)
def list_users(
    scope: TenantWideScopeDep,
    users: UsersDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> UserList:
    items, total = users.page(scope, limit=limit, offset=offset)
    return UserList(items=[user_public(u) for u in items], total=total, limit=limit, offset=offset)


@router.get(
    "/{user_id}",
    response_model=UserPublic,
    summary="Get one end user",
    description=(
        "A user-bound key (or a profile-page session) sees only its own user; any other id "
        "answers 404, like a missing one."
    ),
)
def get_user(user_id: UserIdPath, scope: ScopeDep, users: UsersDep) -> UserPublic:
    return user_public(users.get(scope, user_id))


@router.delete(
    "/{user_id}",
    status_code=204,
    summary="Delete an end user and everything stored about them (rows, index, snapshot)",
    description=(
        "Irreversible: instructions with their history, examples, edits, preferences, recent "
        "turns, keys and sessions bound to the user all go, from the database and from this "
        "replica's vector index and snapshot; other replicas drop them on their next read of the "
        "change log. A user-bound key may delete its own user. 404 for an unknown user."
    ),
)
def delete_user(user_id: UserIdPath, scope: ScopeDep, writer: WriterDep) -> Response:
    writer.delete_user(scope, user_id)
    return Response(status_code=204)
