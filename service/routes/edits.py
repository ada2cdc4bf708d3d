"""Edits (CIPHER's input) and the preferences inferred from them."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from service.deps import EditsDep, EditServiceDep, PreferencesDep, UserScopeDep
from service.routes.instructions import instruction_public
from service.schemas import (
    EditCreate,
    EditList,
    EditPublic,
    ErrorResponse,
    PreferenceHistory,
    PreferenceList,
    PreferencePromote,
    PreferencePromoted,
    PreferencePublic,
    PreferenceUpdate,
    PreferenceVersion,
)
from store.models import PreferenceStatus

router = APIRouter(
    prefix="/v1/users/{user_id}",
    responses={
        401: {"model": ErrorResponse},
        404: {"model": ErrorResponse},
        503: {"model": ErrorResponse},
    },
)


@router.post(
    "/edits",
    status_code=202,
    response_model=EditPublic,
    tags=["edits"],
    summary="Record the user's edit of a model output; the preference is inferred later",
    description=(
        "Returns at once. When the edit is non-trivial a background worker asks the model "
        "for the preference it shows; poll `GET .../edits/{id}` for `inference_status`."
    ),
    responses={429: {"model": ErrorResponse}},
)
def create_edit(body: EditCreate, scope: UserScopeDep, service: EditServiceDep) -> EditPublic:
    edit = service.record(
        scope,
        context=body.context,
        draft=body.draft,
        edited=body.edited,
        task=body.task,
        applied_preference=body.applied_preference,
    )
    return EditPublic.model_validate(edit)


@router.get("/edits", response_model=EditList, tags=["edits"], summary="List the user's edits")
def list_edits(
    scope: UserScopeDep,
    edits: EditsDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> EditList:
    rows, total = edits.page(scope, limit=limit, offset=offset)
    return EditList(
        items=[EditPublic.model_validate(r) for r in rows], total=total, limit=limit, offset=offset
    )


@router.get(
    "/edits/{edit_id}", response_model=EditPublic, tags=["edits"], summary="One edit and its status"
)
def get_edit(edit_id: uuid.UUID, scope: UserScopeDep, edits: EditsDep) -> EditPublic:
    return EditPublic.model_validate(edits.get(scope, edit_id))


@router.get(
    "/preferences",
    response_model=PreferenceList,
    tags=["inferred preferences"],
    summary="Preferences inferred from the user's edits",
)
def list_preferences(
    scope: UserScopeDep,
    preferences: PreferencesDep,
    status: Literal["suggested", "accepted", "rejected", "promoted"] | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> PreferenceList:
    rows, total = preferences.page(
        scope,
        status=PreferenceStatus(status) if status else None,
        limit=limit,
        offset=offset,
    )
    return PreferenceList(
        items=[PreferencePublic.model_validate(r) for r in rows],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.get(
    "/preferences/{preference_id}",
    response_model=PreferencePublic,
    tags=["inferred preferences"],
    summary="The current version of one inferred preference",
)
def get_preference(
    preference_id: uuid.UUID, scope: UserScopeDep, preferences: PreferencesDep
) -> PreferencePublic:
    return PreferencePublic.model_validate(preferences.get(scope, preference_id))


@router.patch(
    "/preferences/{preference_id}",
    response_model=PreferencePublic,
    tags=["inferred preferences"],
    summary="Accept, reject or reword a preference (writes a new version)",
    responses={409: {"model": ErrorResponse}},
)
def update_preference(
    preference_id: uuid.UUID,
    body: PreferenceUpdate,
    scope: UserScopeDep,
    preferences: PreferencesDep,
) -> PreferencePublic:
    row = preferences.revise(
        scope,
        preference_id,
        text=body.text,
        status=PreferenceStatus(body.status) if body.status else None,
    )
    return PreferencePublic.model_validate(row)


@router.post(
    "/preferences/{preference_id}/promote",
    response_model=PreferencePromoted,
    tags=["inferred preferences"],
    summary="Turn the preference into a standing instruction (the preference is kept)",
    responses={422: {"model": ErrorResponse}},
)
def promote_preference(
    preference_id: uuid.UUID,
    body: PreferencePromote,
    scope: UserScopeDep,
    service: EditServiceDep,
) -> PreferencePromoted:
    preference, instruction = service.promote(
        scope, preference_id, applies_when=body.applies_when, always_on=body.always_on
    )
    return PreferencePromoted(
        preference=PreferencePublic.model_validate(preference),
        instruction=instruction_public(instruction),
    )


@router.get(
    "/preferences/{preference_id}/history",
    response_model=PreferenceHistory,
    tags=["inferred preferences"],
    summary="Every version of a preference, oldest first",
)
def preference_history(
    preference_id: uuid.UUID, scope: UserScopeDep, preferences: PreferencesDep
) -> PreferenceHistory:
    rows = preferences.history(scope, preference_id)
    return PreferenceHistory(
        id=preference_id, versions=[PreferenceVersion.model_validate(r) for r in rows]
    )
