from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks

from personalization.messages import ChatMessage
from service.deps import ContextDep, SettingsDep, TurnRecorderDep, TurnUserScopeDep
from service.schemas import (
    AppliedExample,
    AppliedInstruction,
    AppliedPreference,
    ContextRequest,
    ContextResponse,
    EmbedderInfo,
    ErrorResponse,
    OmittedInstruction,
    SystemMessage,
)

router = APIRouter(prefix="/v1/users/{user_id}", tags=["context"])


@router.post(
    "/context",
    response_model=ContextResponse,
    summary="The profile that applies to this chat turn, ready to add to the model's context",
    description=(
        "The last user message is the turn's query (422 `no_user_message` without one). The "
        "answer lists the instructions applied with their reason and score, those left out (token "
        "budget or `top_k`), the nearest examples and the inferred preference, and "
        "`system_message`: a marked data block to add after the app's own system prompt. "
        "Per-request options override the server's settings within the declared bounds. The items "
        "used are recorded in the user's recent turns (`GET .../turns`). An unknown user is "
        "404 `user_not_found`, or is created when TAILOR_CREATE_USERS_ON_CHAT is on."
    ),
    responses={
        401: {"model": ErrorResponse},
        404: {"model": ErrorResponse},
        422: {"model": ErrorResponse},
        503: {"model": ErrorResponse},
    },
)
def turn_context(
    body: ContextRequest,
    scope: TurnUserScopeDep,
    builder: ContextDep,
    settings: SettingsDep,
    recorder: TurnRecorderDep,
    background: BackgroundTasks,
) -> ContextResponse:
    options = settings.context_options(
        threshold=body.threshold,
        top_k=body.top_k,
        token_budget=body.token_budget,
        examples_k=body.examples_k,
        cipher_k=body.cipher_k,
        whole_profile=body.whole_profile,
    )
    messages = [ChatMessage(role=m.role, content=m.text()) for m in body.messages]
    turn = builder.build(scope, messages, options)
    background.add_task(recorder.record, scope, "context", turn)
    return ContextResponse(
        user_id=scope.external_id,
        instructions=[
            AppliedInstruction(
                id=s.instruction.instruction_id,
                version=s.instruction.version,
                text=s.instruction.text,
                applies_when=s.instruction.applies_when,
                always_on=s.instruction.always_on,
                kind=s.instruction.kind,
                score=round(s.score, 4),
                reason=s.reason.value,
            )
            for s in turn.selection.selected
        ],
        omitted=[
            OmittedInstruction(
                id=o.instruction.instruction_id,
                version=o.instruction.version,
                score=round(o.score, 4),
                reason=o.reason.value,
            )
            for o in turn.selection.omitted
        ],
        examples=[AppliedExample(id=e.example.id, score=round(e.score, 4)) for e in turn.examples],
        inferred_preference=(
            AppliedPreference(
                text=turn.inferred.text,
                preference_ids=list(turn.inferred.preference_ids),
                edit_ids=list(turn.inferred.edit_ids),
                aggregated_by_model=turn.inferred.aggregated_by_model,
            )
            if turn.inferred
            else None
        ),
        system_message=SystemMessage(content=turn.system_message) if turn.system_message else None,
        token_estimate=turn.tokens,
        embedder=EmbedderInfo(model=builder.embedder_id, dim=builder.embedder_dim),
    )
