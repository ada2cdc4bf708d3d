"""OpenAI-compatible chat: the official `openai` client works with base_url pointed at
Tailor. The end user is the request's `user` field, or the key's bound user."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, BackgroundTasks
from fastapi.responses import JSONResponse, StreamingResponse

from personalization.backends import GenerationSettings
from personalization.chat import PreparedChat
from personalization.messages import ChatMessage
from personalization.provenance import used_items
from service.deps import (
    CaptureServiceDep,
    ChatDep,
    ScopeDep,
    SettingsDep,
    TurnRecorderDep,
    UsersDep,
)
from service.errors import error_body
from service.schemas import (
    AssistantMessage,
    ChatCompletionRequest,
    ChatCompletionResponse,
    Choice,
    ErrorResponse,
    ProfileItemUsed,
    TailorInfo,
    Usage,
)
from service.settings import Settings
from store.errors import InvalidInput, TailorError
from store.scope import TenantScope, UserScope
from store.users import UserRepository

router = APIRouter(prefix="/v1", tags=["chat"])

PROFILE_HEADER = "X-Tailor-Profile-Items"


def _user_scope(
    body: ChatCompletionRequest, scope: TenantScope, users: UserRepository
) -> UserScope:
    if body.user is not None:
        return users.resolve(scope, body.user)
    if scope.bound_user_id is None:
        raise InvalidInput(
            "set `user` to the end user's id (or use a key bound to one user)",
            code="user_required",
        )
    return users.resolve_bound(scope)


def _generation(body: ChatCompletionRequest, settings: Settings) -> GenerationSettings:
    stop = body.stop if isinstance(body.stop, list) else ([body.stop] if body.stop else [])
    return GenerationSettings(
        max_tokens=body.max_completion_tokens or body.max_tokens or settings.generation_max_tokens,
        temperature=(
            body.temperature if body.temperature is not None else settings.generation_temperature
        ),
        top_p=body.top_p if body.top_p is not None else 0.95,
        stop=tuple(stop),
        seed=body.seed,
    )


def _tailor_info(scope: UserScope, prepared: PreparedChat) -> TailorInfo:
    return TailorInfo(
        user_id=scope.external_id,
        profile_items=[
            ProfileItemUsed.model_validate(item.as_json()) for item in used_items(prepared.turn)
        ],
    )


def _sse(data: dict[str, Any] | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"


@router.post(
    "/chat/completions",
    response_model=ChatCompletionResponse,
    summary="OpenAI-compatible chat completion, conditioned on the end user's profile",
    description=(
        "With `stream: true` the answer is server-sent events of `chat.completion.chunk` "
        f"objects, ending with `data: [DONE]`. The `{PROFILE_HEADER}` header and the `tailor` "
        "field (first chunk when streaming) list the profile items used."
    ),
    responses={
        401: {"model": ErrorResponse},
        404: {"model": ErrorResponse},
        422: {"model": ErrorResponse},
        429: {"model": ErrorResponse},
        502: {"model": ErrorResponse},
        503: {"model": ErrorResponse},
    },
)
def chat_completions(
    body: ChatCompletionRequest,
    scope: ScopeDep,
    users: UsersDep,
    chat: ChatDep,
    settings: SettingsDep,
    recorder: TurnRecorderDep,
    capture: CaptureServiceDep,
    background: BackgroundTasks,
) -> Any:
    user = _user_scope(body, scope, users)
    options = settings.context_options()
    generation = _generation(body, settings)
    messages = [ChatMessage(role=m.role, content=m.text()) for m in body.messages]
    prepared = chat.prepare(user, messages, options, generation)
    info = _tailor_info(user, prepared)
    background.add_task(recorder.record, user, "chat", prepared.turn)
    if settings.capture_chat:
        background.add_task(capture.submit_turn, user, messages)
    headers = {PROFILE_HEADER: ",".join(str(item.id) for item in info.profile_items)}
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())

    if not body.stream:
        done = chat.complete(prepared, generation)
        response = ChatCompletionResponse(
            id=completion_id,
            created=created,
            model=done.model,
            choices=[
                Choice(
                    message=AssistantMessage(content=done.text), finish_reason=done.finish_reason
                )
            ],
            usage=Usage(
                prompt_tokens=done.prompt_tokens,
                completion_tokens=done.completion_tokens,
                total_tokens=done.prompt_tokens + done.completion_tokens,
            ),
            tailor=info,
        )
        return JSONResponse(response.model_dump(mode="json"), headers=headers)

    deltas = chat.stream(prepared, generation)

    def events() -> Iterator[str]:
        base = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": chat.model_id,
        }
        yield _sse(
            {
                **base,
                "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}],
                "tailor": info.model_dump(mode="json"),
            }
        )
        finish = "stop"
        try:
            for delta in deltas:
                if delta.text:
                    yield _sse(
                        {
                            **base,
                            "choices": [
                                {
                                    "index": 0,
                                    "delta": {"content": delta.text},
                                    "finish_reason": None,
                                }
                            ],
                        }
                    )
                finish = delta.finish_reason or finish
        except TailorError as exc:
            # The status line has gone out: the model's failure midway is reported the
            # way OpenAI-compatible streams report errors, as an `error` event.
            yield _sse(error_body(exc.code, exc.message))
            return
        yield _sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
        yield _sse("[DONE]")

    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)
