from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response

from service.deps import ExamplesDep, UserScopeDep, WriterDep
from service.idempotency import IDEMPOTENCY_HEADERS, IdempotencyDep
from service.schemas import ErrorResponse, ExampleCreate, ExampleList, ExamplePublic

router = APIRouter(
    prefix="/v1/users/{user_id}/examples",
    tags=["preference examples"],
    responses={
        401: {"model": ErrorResponse},
        404: {"model": ErrorResponse},
        503: {"model": ErrorResponse},
    },
)


@router.post(
    "",
    status_code=201,
    response_model=ExamplePublic,
    summary="Record a (prompt, chosen, rejected) example of this user's taste",
    description=(
        "The prompt is embedded; the nearest examples to a turn are added to its context "
        "(`examples_k`). Prompt up to 8000 characters, each answer up to 16000. Send an "
        "`Idempotency-Key` to make retries safe."
    ),
    responses={201: {"headers": IDEMPOTENCY_HEADERS}},
)
def create_example(
    body: ExampleCreate, scope: UserScopeDep, writer: WriterDep, idempotent: IdempotencyDep
) -> Response:
    def create() -> ExamplePublic:
        row = writer.create_example(
            scope, prompt=body.prompt, chosen=body.chosen, rejected=body.rejected
        )
        return ExamplePublic.model_validate(row)

    return idempotent.respond(scope, body, 201, create)


@router.get(
    "",
    response_model=ExampleList,
    summary="List the user's preference examples",
    description=(
        "Current (not deleted) examples, oldest first; page with `limit` (1-500, default 100) and "
        "`offset`."
    ),
)
def list_examples(
    scope: UserScopeDep,
    examples: ExamplesDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> ExampleList:
    rows, total = examples.page(scope, limit=limit, offset=offset)
    return ExampleList(
        items=[ExamplePublic.model_validate(r) for r in rows],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.get(
    "/{example_id}",
    response_model=ExamplePublic,
    summary="Get one example",
    description="404 for a deleted example or one of another user.",
)
def get_example(example_id: uuid.UUID, scope: UserScopeDep, examples: ExamplesDep) -> ExamplePublic:
    return ExamplePublic.model_validate(examples.get(scope, example_id))


@router.delete(
    "/{example_id}",
    status_code=204,
    summary="Delete an example (kept in history)",
    description=(
        "The example stops being used at once on this replica (and on others at their next turn "
        "for the user); the row is kept, closed, and appears in the export until the user is "
        "deleted."
    ),
)
def delete_example(example_id: uuid.UUID, scope: UserScopeDep, writer: WriterDep) -> Response:
    writer.delete_example(scope, example_id)
    return Response(status_code=204)
