"""Conversations submitted for capture, and the suggestions captured from them."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response

from personalization.messages import ChatMessage
from service.capture_schemas import (
    CapturePublic,
    ConversationCreate,
    SuggestionAccept,
    SuggestionAccepted,
    SuggestionList,
    SuggestionPublic,
)
from service.deps import CapturesDep, CaptureServiceDep, UserScopeDep
from service.idempotency import IDEMPOTENCY_HEADERS, IdempotencyDep
from service.routes.instructions import instruction_public
from service.schemas import ErrorResponse
from store.models import SuggestionStatus

router = APIRouter(
    prefix="/v1/users/{user_id}",
    tags=["capture"],
    responses={
        401: {"model": ErrorResponse},
        404: {"model": ErrorResponse},
        503: {"model": ErrorResponse},
    },
)


DECIDED: dict[int | str, dict[str, Any]] = {
    409: {
        "model": ErrorResponse,
        "description": "`suggestion_already_decided`: it was accepted or rejected before; "
        "`concurrent_update`: the instruction it supersedes changed meanwhile",
    }
}


@router.post(
    "/conversations",
    status_code=202,
    response_model=CapturePublic,
    summary="Submit a conversation; preferences the user states in it become suggestions",
    description=(
        "Returns at once. A background worker reads the `user` messages only (assistant, "
        "tool and system text is never taken as the user's preference) and turns each "
        "stated preference into a suggestion, reinforces an item it repeats, or suggests "
        "superseding an instruction it contradicts. Poll `GET .../conversations/{id}`. "
        "Send an `Idempotency-Key` to make retries safe. 429 `capture_queue_full` when the "
        "tenant's queue is full."
    ),
    responses={202: {"headers": IDEMPOTENCY_HEADERS}, 429: {"model": ErrorResponse}},
)
def submit_conversation(
    body: ConversationCreate,
    scope: UserScopeDep,
    service: CaptureServiceDep,
    idempotent: IdempotencyDep,
) -> Response:
    def submit() -> CapturePublic:
        messages = [ChatMessage(role=m.role, content=m.text()) for m in body.messages]
        job = service.submit(scope, messages, body.conversation_id)
        return CapturePublic.model_validate(job)

    return idempotent.respond(scope, body, 202, submit)


@router.get(
    "/conversations/{capture_id}",
    response_model=CapturePublic,
    summary="One submitted conversation and what was captured from it",
    description=(
        "`status` is `pending`, `running`, `done` or `failed` (after the retries, with "
        "`error`); once done, `suggestions` names the suggestions it created or reinforced, "
        "and those it auto-accepted (`TAILOR_CAPTURE_AUTO_ACCEPT`) are already instructions. "
        "The messages themselves are dropped once read."
    ),
)
def get_conversation(
    capture_id: uuid.UUID, scope: UserScopeDep, captures: CapturesDep
) -> CapturePublic:
    return CapturePublic.model_validate(captures.get_job(scope, capture_id))


@router.get(
    "/suggestions",
    response_model=SuggestionList,
    summary="Preferences captured from the user's conversations, awaiting a decision",
    description=(
        "Oldest first, filtered by `status` (default `pending`). Pending suggestions are not "
        "applied to turns; accept one to make it a standing instruction."
    ),
)
def list_suggestions(
    scope: UserScopeDep,
    captures: CapturesDep,
    status: Annotated[Literal["pending", "accepted", "rejected"], Query()] = "pending",
) -> SuggestionList:
    rows = captures.suggestions(scope, SuggestionStatus(status))
    return SuggestionList(data=[SuggestionPublic.model_validate(r) for r in rows])


@router.post(
    "/suggestions/{suggestion_id}/accept",
    response_model=SuggestionAccepted,
    summary="Accept (optionally reworded): it becomes a standing instruction",
    description=(
        "A `new` suggestion adds an instruction with source `conversation` and the quote as "
        "provenance; a `supersede` one writes a new version of the instruction it "
        "contradicts (history kept). From the next turn on it is selected like any "
        "instruction. Exactly once: a second accept answers 409."
    ),
    responses={**DECIDED, 422: {"model": ErrorResponse}},
)
def accept_suggestion(
    suggestion_id: uuid.UUID,
    scope: UserScopeDep,
    service: CaptureServiceDep,
    body: SuggestionAccept | None = None,
) -> SuggestionAccepted:
    suggestion, instruction = service.accept(
        scope, suggestion_id, body.text if body is not None else None
    )
    return SuggestionAccepted(
        suggestion=SuggestionPublic.model_validate(suggestion),
        instruction=instruction_public(instruction),
    )


@router.post(
    "/suggestions/{suggestion_id}/reject",
    response_model=SuggestionPublic,
    summary="Reject: it is never suggested again",
    description=(
        "When the user states it again, the rejected suggestion's `seen_count` grows "
        "instead of a new suggestion appearing. 409 if it was decided before."
    ),
    responses=DECIDED,
)
def reject_suggestion(
    suggestion_id: uuid.UUID, scope: UserScopeDep, service: CaptureServiceDep
) -> SuggestionPublic:
    return SuggestionPublic.model_validate(service.reject(scope, suggestion_id))
