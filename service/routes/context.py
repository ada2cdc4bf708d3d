"""POST /context: a turn's whole server-side work runs in ONE threadpool call.

Resolving the user (with their change stamp, one query), embedding, selecting,
composing and serialising the answer all happen in the same worker thread; the event
loop only parses the request and writes the bytes. With FastAPI's per-dependency and
per-route hops, and the response model validated and encoded again on the loop, a turn
paid several thread hand-offs and as much again in Python on the loop, which every
other turn waits on."""

from __future__ import annotations

from fastapi import APIRouter, Response
from starlette.concurrency import run_in_threadpool

from personalization.context import TurnContext
from personalization.messages import ChatMessage
from service.deps import PortsDep, ScopeDep, UserIdPath
from service.ports import Ports
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
from store.scope import TenantScope

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
async def turn_context(
    body: ContextRequest, user_id: UserIdPath, scope: ScopeDep, ports: PortsDep
) -> Response:
    def turn() -> Response:
        return _answer_turn(ports, scope, user_id, body)

    return await run_in_threadpool(turn)


def _answer_turn(
    ports: Ports, key_scope: TenantScope, user_id: str, body: ContextRequest
) -> Response:
    settings = ports.settings
    if settings.create_users_on_chat:
        scope = ports.users.resolve_or_create(key_scope, user_id)
        stamp = None  # the builder reads it
    else:
        scope, stamp = ports.users.resolve_with_stamp(key_scope, user_id)
    options = settings.context_options(
        threshold=body.threshold,
        top_k=body.top_k,
        token_budget=body.token_budget,
        examples_k=body.examples_k,
        cipher_k=body.cipher_k,
        whole_profile=body.whole_profile,
    )
    messages = [ChatMessage(role=m.role, content=m.text()) for m in body.messages]
    builder = ports.context
    turn = builder.build(scope, messages, options, stamp=stamp)
    # Only a queue append (personalization/turn_batching.py): cheaper here than a
    # background task, which would be one more threadpool hop after the answer.
    ports.turn_recorder.record(scope, "context", turn)
    answer = context_response(turn, scope.external_id, builder.embedder_id, builder.embedder_dim)
    return Response(answer.model_dump_json(), media_type="application/json")


def context_response(turn: TurnContext, external_id: str, model: str, dim: int) -> ContextResponse:
    return ContextResponse(
        user_id=external_id,
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
        embedder=EmbedderInfo(model=model, dim=dim),
    )
