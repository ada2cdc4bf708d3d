"""Export everything stored about a user; restore a profile from such an export."""

from __future__ import annotations

from fastapi import APIRouter, Response

from service.deps import ImporterDep, PortsDep, UserScopeDep
from service.idempotency import IDEMPOTENCY_HEADERS, IdempotencyDep
from service.schemas import ErrorResponse, ImportResult, ProfileExport, ProfileImport
from store.export import export_user

router = APIRouter(
    prefix="/v1/users/{user_id}",
    tags=["privacy"],
    responses={401: {"model": ErrorResponse}, 404: {"model": ErrorResponse}},
)


@router.get(
    "/export",
    response_model=ProfileExport,
    summary="Everything stored about the user: every version, edits, examples, audit",
    description=(
        "A JSON document (`tailor-export-v1`) the user can keep or import elsewhere: every "
        "version of every item (deleted ones included), edits, preferences, the recent-turn "
        "record and the audit trail. Embeddings are left out: they are recomputed on import."
    ),
)
def export_profile(scope: UserScopeDep, ports: PortsDep) -> ProfileExport:
    ports.flush_turn_records()
    return ProfileExport.model_validate(export_user(ports.engine, scope))


@router.post(
    "/import",
    status_code=201,
    response_model=ImportResult,
    summary="Restore a profile from an export into this user (re-embedded)",
    description=(
        "All or nothing: on any error nothing is written, so a retry is safe. Items are "
        "recognised by their exported ids; importing the same export again skips them "
        "(`skipped`). Queued edits (`pending`, `running`) count against the tenant's edit "
        "queue: 422 `import_exceeds_edit_queue` when they could never fit, 429 "
        "`edit_queue_full` when the queue must drain first."
    ),
    responses={
        201: {"headers": IDEMPOTENCY_HEADERS},
        413: {"model": ErrorResponse},
        422: {"model": ErrorResponse},
        429: {"model": ErrorResponse},
    },
)
def import_profile(
    body: ProfileImport, scope: UserScopeDep, importer: ImporterDep, idempotent: IdempotencyDep
) -> Response:
    def restore() -> ImportResult:
        counts = importer.restore(scope, body.model_dump(mode="json"))
        return ImportResult(
            instructions=counts.instructions,
            examples=counts.examples,
            edits=counts.edits,
            preferences=counts.preferences,
            skipped=counts.skipped,
        )

    return idempotent.respond(scope, body, 201, restore)
