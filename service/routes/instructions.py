from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response

from service.deps import InstructionsDep, UserScopeDep, WriterDep
from service.etags import ETAG_HEADERS, IfMatch, etag_header, expected_versions
from service.idempotency import IDEMPOTENCY_HEADERS, IdempotencyDep
from service.schemas import (
    ErrorResponse,
    InstructionCreate,
    InstructionHistory,
    InstructionList,
    InstructionPublic,
    InstructionRestore,
    InstructionUpdate,
    InstructionVersion,
)
from store.instructions import InstructionChanges
from store.models import Instruction, InstructionKind, InstructionSource, InstructionStatus

router = APIRouter(
    prefix="/v1/users/{user_id}/instructions",
    tags=["standing instructions"],
    responses={
        401: {"model": ErrorResponse},
        404: {"model": ErrorResponse},
        503: {"model": ErrorResponse},
    },
)

CONDITIONAL: dict[int | str, dict[str, Any]] = {
    409: {
        "model": ErrorResponse,
        "description": "`concurrent_update`: another write changed the instruction since "
        "this one read it; read it again and retry",
    },
    412: {
        "model": ErrorResponse,
        "description": "`precondition_failed`: If-Match names a version that is not the "
        "current one",
    },
}


def instruction_public(row: Instruction) -> InstructionPublic:
    return InstructionPublic.model_validate(row)


def instruction_etag(public: Any) -> dict[str, str]:
    assert isinstance(public, InstructionPublic)
    return etag_header(public.id, public.version)


@router.post(
    "",
    status_code=201,
    response_model=InstructionPublic,
    summary="Add a standing instruction",
    description=(
        "Text up to 1000 characters, condition (`applies_when`) up to 500. The text and "
        "condition are embedded and the item's kind and domains derived now, so turns "
        "select it from the next request on. Send an `Idempotency-Key` to make retries safe."
    ),
    responses={
        201: {"headers": {**ETAG_HEADERS, **IDEMPOTENCY_HEADERS}},
        409: {"model": ErrorResponse, "description": "`idempotency_key_in_use`"},
    },
)
def create_instruction(
    body: InstructionCreate, scope: UserScopeDep, writer: WriterDep, idempotent: IdempotencyDep
) -> Response:
    def create() -> InstructionPublic:
        row = writer.create_instruction(
            scope,
            text=body.text,
            applies_when=body.applies_when,
            always_on=body.always_on,
            source=InstructionSource(body.source),
        )
        return instruction_public(row)

    return idempotent.respond(scope, body, 201, create, instruction_etag)


@router.get(
    "",
    response_model=InstructionList,
    summary="List current standing instructions",
    description=(
        "The current version of each item, oldest first; deleted items are left out. Filter with "
        "`status` (`active` or `disabled`); page with `limit` (1-500, default 100) and `offset`."
    ),
)
def list_instructions(
    scope: UserScopeDep,
    instructions: InstructionsDep,
    status: Literal["active", "disabled"] | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> InstructionList:
    rows, total = instructions.page(
        scope,
        status=InstructionStatus(status) if status else None,
        limit=limit,
        offset=offset,
    )
    return InstructionList(
        items=[instruction_public(r) for r in rows], total=total, limit=limit, offset=offset
    )


@router.get(
    "/{instruction_id}",
    response_model=InstructionPublic,
    summary="Get the current version",
    description=(
        "The `ETag` header names this version; send it back as `If-Match` to change or delete "
        "only this version. 404 for a deleted or unknown item."
    ),
    responses={200: {"headers": ETAG_HEADERS}},
)
def get_instruction(
    instruction_id: uuid.UUID,
    scope: UserScopeDep,
    instructions: InstructionsDep,
    response: Response,
) -> InstructionPublic:
    public = instruction_public(instructions.get(scope, instruction_id))
    response.headers.update(instruction_etag(public))
    return public


@router.patch(
    "/{instruction_id}",
    response_model=InstructionPublic,
    summary="Change an instruction: writes a new version, the old one is kept in history",
    description=(
        'Only the fields sent change; `applies_when: ""` removes the condition. The new '
        "version is embedded again when its text, condition or applicability changes. "
        "With `If-Match: <ETag>` it changes only that version (else 412); 409 "
        "`concurrent_update` when another write won a race."
    ),
    responses={200: {"headers": ETAG_HEADERS}, **CONDITIONAL},
)
def update_instruction(
    instruction_id: uuid.UUID,
    body: InstructionUpdate,
    scope: UserScopeDep,
    writer: WriterDep,
    response: Response,
    if_match: IfMatch = None,
) -> InstructionPublic:
    auto = "auto" in (body.domains, body.typical_requests)
    changes = InstructionChanges(
        text=body.text,
        applies_when=body.applies_when,
        always_on=body.always_on,
        status=InstructionStatus(body.status) if body.status else None,
        kind=None if body.kind in (None, "auto") else InstructionKind(str(body.kind)),
        rederive_kind=body.kind == "auto",
        domains=None if auto or body.domains is None else list(body.domains),
        typical_requests=(
            None if auto or body.typical_requests is None else list(body.typical_requests)
        ),
        rederive_applicability=auto,
    )
    row = writer.update_instruction(
        scope, instruction_id, changes, expected=expected_versions(if_match, instruction_id)
    )
    public = instruction_public(row)
    response.headers.update(instruction_etag(public))
    return public


@router.delete(
    "/{instruction_id}",
    status_code=204,
    summary="Delete an instruction (soft: its history stays readable)",
    description=(
        "The item stops applying at once; its history stays readable and exported until "
        "the user is deleted. With `If-Match: <ETag>` it deletes only that version "
        "(else 412). 404 for an item already deleted."
    ),
    responses=CONDITIONAL,
)
def delete_instruction(
    instruction_id: uuid.UUID, scope: UserScopeDep, writer: WriterDep, if_match: IfMatch = None
) -> Response:
    writer.delete_instruction(
        scope, instruction_id, expected=expected_versions(if_match, instruction_id)
    )
    return Response(status_code=204)


@router.get(
    "/{instruction_id}/history",
    response_model=InstructionHistory,
    summary="Every version of an instruction, oldest first (deleted ones included)",
    description=(
        "Each version with its validity interval (`valid_from`, `valid_to`) and the version that "
        "replaced it. Any earlier version can be brought back with `POST .../restore`."
    ),
)
def instruction_history(
    instruction_id: uuid.UUID, scope: UserScopeDep, instructions: InstructionsDep
) -> InstructionHistory:
    rows = instructions.history(scope, instruction_id)
    return InstructionHistory(
        id=instruction_id, versions=[InstructionVersion.model_validate(r) for r in rows]
    )


@router.post(
    "/{instruction_id}/restore",
    response_model=InstructionPublic,
    summary="Restore an earlier version: writes it again as a new version",
    description=(
        "The new version takes the earlier version's text, condition, always-on setting "
        "and whatever the user had pinned (kind, domains, typical requests); what was "
        "derived is derived again. The status (active or disabled) stays as it is, and "
        "the history keeps every version. 404 `instruction_version_not_found` for a "
        "version the item never had, 422 `restore_current_version` for the current one. "
        "With `If-Match: <ETag>` it writes only on top of that version (else 412). A "
        "deleted item cannot be restored (404)."
    ),
    responses={
        200: {"headers": ETAG_HEADERS},
        422: {"model": ErrorResponse, "description": "`restore_current_version`"},
        **CONDITIONAL,
    },
)
def restore_instruction(
    instruction_id: uuid.UUID,
    body: InstructionRestore,
    scope: UserScopeDep,
    writer: WriterDep,
    response: Response,
    if_match: IfMatch = None,
) -> InstructionPublic:
    row = writer.restore_instruction(
        scope, instruction_id, body.version, expected=expected_versions(if_match, instruction_id)
    )
    public = instruction_public(row)
    response.headers.update(instruction_etag(public))
    return public
