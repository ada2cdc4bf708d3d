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


@router.get("", response_model=ExampleList, summary="List the user's preference examples")
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


@router.get("/{example_id}", response_model=ExamplePublic, summary="Get one example")
def get_example(example_id: uuid.UUID, scope: UserScopeDep, examples: ExamplesDep) -> ExamplePublic:
    return ExamplePublic.model_validate(examples.get(scope, example_id))


@router.delete("/{example_id}", status_code=204, summary="Delete an example (kept in history)")
def delete_example(example_id: uuid.UUID, scope: UserScopeDep, writer: WriterDep) -> Response:
    writer.delete_example(scope, example_id)
    return Response(status_code=204)
