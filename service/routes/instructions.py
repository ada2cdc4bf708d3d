from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from service.deps import InstructionsDep, UserScopeDep, WriterDep
from service.schemas import (
    ErrorResponse,
    InstructionCreate,
    InstructionHistory,
    InstructionList,
    InstructionPublic,
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


def instruction_public(row: Instruction) -> InstructionPublic:
    return InstructionPublic.model_validate(row)


@router.post(
    "", status_code=201, response_model=InstructionPublic, summary="Add a standing instruction"
)
def create_instruction(
    body: InstructionCreate, scope: UserScopeDep, writer: WriterDep
) -> InstructionPublic:
    row = writer.create_instruction(
        scope,
        text=body.text,
        applies_when=body.applies_when,
        always_on=body.always_on,
        source=InstructionSource(body.source),
    )
    return instruction_public(row)


@router.get("", response_model=InstructionList, summary="List current standing instructions")
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
    "/{instruction_id}", response_model=InstructionPublic, summary="Get the current version"
)
def get_instruction(
    instruction_id: uuid.UUID, scope: UserScopeDep, instructions: InstructionsDep
) -> InstructionPublic:
    return instruction_public(instructions.get(scope, instruction_id))


@router.patch(
    "/{instruction_id}",
    response_model=InstructionPublic,
    summary="Change an instruction: writes a new version, the old one is kept in history",
    responses={409: {"model": ErrorResponse}},
)
def update_instruction(
    instruction_id: uuid.UUID, body: InstructionUpdate, scope: UserScopeDep, writer: WriterDep
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
    return instruction_public(writer.update_instruction(scope, instruction_id, changes))


@router.delete(
    "/{instruction_id}",
    status_code=204,
    summary="Delete an instruction (soft: its history stays readable)",
)
def delete_instruction(
    instruction_id: uuid.UUID, scope: UserScopeDep, writer: WriterDep
) -> Response:
    writer.delete_instruction(scope, instruction_id)
    return Response(status_code=204)


@router.get(
    "/{instruction_id}/history",
    response_model=InstructionHistory,
    summary="Every version of an instruction, oldest first (deleted ones included)",
)
def instruction_history(
    instruction_id: uuid.UUID, scope: UserScopeDep, instructions: InstructionsDep
) -> InstructionHistory:
    rows = instructions.history(scope, instruction_id)
    return InstructionHistory(
        id=instruction_id, versions=[InstructionVersion.model_validate(r) for r in rows]
    )
