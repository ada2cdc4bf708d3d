"""Edits (CIPHER's input) and the preferences inferred from them."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response

from service.deps import EditsDep, EditServiceDep, PreferencesDep, UserScopeDep
from service.etags import ETAG_HEADERS, IfMatch, etag_header, expected_versions
from service.idempotency import IDEMPOTENCY_HEADERS, IdempotencyDep
from service.routes.instructions import CONDITIONAL, instruction_public
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
    responses={202: {"headers": IDEMPOTENCY_HEADERS}, 429: {"model": ErrorResponse}},
)
def create_edit(
    body: EditCreate, scope: UserScopeDep, service: EditServiceDep, idempotent: IdempotencyDep
) -> Response:
    def record() -> EditPublic:
        edit = service.record(
            scope,
            context=body.context,
            draft=body.draft,
            edited=body.edited,
            task=body.task,
            applied_preference=body.applied_preference,
        )
        return EditPublic.model_validate(edit)

    return idempotent.respond(scope, body, 202, record)


@router.get(
    "/edits",
    response_model=EditList,
    tags=["edits"],
    summary="List the user's edits",
    description=(
        "Oldest first, with each edit's inference status and the preference inferred from it; "
        "page with `limit` (1-500, default 100) and `offset`."
    ),
)
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
    "/edits/{edit_id}",
    response_model=EditPublic,
    tags=["edits"],
    summary="One edit and its status",
    description=(
        "Poll `inference_status` (`pending`, `running`, `done`, `skipped` for a trivial edit, "
        "`failed` after the retries); `preference_id` names the preference once inferred."
    ),
)
def get_edit(edit_id: uuid.UUID, scope: UserScopeDep, edits: EditsDep) -> EditPublic:
    return EditPublic.model_validate(edits.get(scope, edit_id))


@router.get(
    "/preferences",
    response_model=PreferenceList,
    tags=["inferred preferences"],
    summary="Preferences inferred from the user's edits",
    description=(
        "The current version of each, oldest first. Filter with `status`; page with `limit` "
        "(1-500, default 100) and `offset`. Suggested and accepted ones are applied to turns; "
        "rejected and promoted ones are not."
    ),
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
    description=(
        "The `ETag` header names this version, for `If-Match` on a later change. 404 for an "
        "unknown preference or one of another user."
    ),
    responses={200: {"headers": ETAG_HEADERS}},
)
def get_preference(
    preference_id: uuid.UUID, scope: UserScopeDep, preferences: PreferencesDep, response: Response
) -> PreferencePublic:
    row = preferences.get(scope, preference_id)
    response.headers.update(etag_header(row.preference_id, row.version))
    return PreferencePublic.model_validate(row)


@router.patch(
    "/preferences/{preference_id}",
    response_model=PreferencePublic,
    tags=["inferred preferences"],
    summary="Accept, reject or reword a preference (writes a new version)",
    description=(
        "Accepting or rewording keeps it applied to turns; rejecting stops it for good "
        "(until set back to `suggested`). Every change writes a new version. With "
        "`If-Match: <ETag>` it changes only that version (else 412)."
    ),
    responses={200: {"headers": ETAG_HEADERS}, **CONDITIONAL},
)
def update_preference(
    preference_id: uuid.UUID,
    body: PreferenceUpdate,
    scope: UserScopeDep,
    preferences: PreferencesDep,
    response: Response,
    if_match: IfMatch = None,
) -> PreferencePublic:
    row = preferences.revise(
        scope,
        preference_id,
        text=body.text,
        status=PreferenceStatus(body.status) if body.status else None,
        expected=expected_versions(if_match, preference_id),
    )
    response.headers.update(etag_header(row.preference_id, row.version))
    return PreferencePublic.model_validate(row)


@router.post(
    "/preferences/{preference_id}/promote",
    response_model=PreferencePromoted,
    tags=["inferred preferences"],
    summary="Turn the preference into a standing instruction (the preference is kept)",
    description=(
        "Exactly once per preference: of several promotes racing on one preference, one "
        "succeeds and the others answer 409 `concurrent_update`; a promote of a promoted "
        "(or rejected) preference answers 422 `preference_not_promotable`. If-Match (the "
        "preference's ETag) and Idempotency-Key are honoured."
    ),
    responses={
        200: {"headers": {**ETAG_HEADERS, **IDEMPOTENCY_HEADERS}},
        422: {"model": ErrorResponse},
        **CONDITIONAL,
    },
)
def promote_preference(
    preference_id: uuid.UUID,
    body: PreferencePromote,
    scope: UserScopeDep,
    service: EditServiceDep,
    idempotent: IdempotencyDep,
    if_match: IfMatch = None,
) -> Response:
    def promote() -> PreferencePromoted:
        preference, instruction = service.promote(
            scope,
            preference_id,
            applies_when=body.applies_when,
            always_on=body.always_on,
            expected=expected_versions(if_match, preference_id),
        )
        return PreferencePromoted(
            preference=PreferencePublic.model_validate(preference),
            instruction=instruction_public(instruction),
        )

    return idempotent.respond(scope, body, 200, promote, _preference_etag)


def _preference_etag(result: Any) -> dict[str, str]:
    """The promoted preference's version: what a later If-Match on it must name."""
    assert isinstance(result, PreferencePromoted)
    return etag_header(result.preference.id, result.preference.version)


@router.get(
    "/preferences/{preference_id}/history",
    response_model=PreferenceHistory,
    tags=["inferred preferences"],
    summary="Every version of a preference, oldest first",
    description=(
        "Each version with its status, text and validity interval, so a person can see how a "
        "suggestion was reworded, accepted or rejected."
    ),
)
def preference_history(
    preference_id: uuid.UUID, scope: UserScopeDep, preferences: PreferencesDep
) -> PreferenceHistory:
    rows = preferences.history(scope, preference_id)
    return PreferenceHistory(
        id=preference_id, versions=[PreferenceVersion.model_validate(r) for r in rows]
    )
