"""OpenAI-compatible chat: the official `openai` client works with base_url pointed at
Tailor. The end user is the request's `user` field, or the key's bound user. The app's
other OpenAI fields travel to the backend unchanged, and the backend's answer (tool
calls, logprobs, finish reason, usage) comes back unchanged, plus the `tailor` field."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Path
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError

from personalization.backends import BackendFailed, Completion, GenerationSettings
from personalization.chat import ChatService, PreparedChat
from personalization.messages import ChatMessage
from personalization.provenance import used_items
from personalization.text import estimate_tokens
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
    ModelList,
    ModelPublic,
    ProfileItemUsed,
    TailorInfo,
    Usage,
)
from service.settings import Settings
from store.errors import InvalidInput, NotFound, TailorError
from store.scope import TenantScope, UserScope
from store.users import UserRepository

router = APIRouter(prefix="/v1", tags=["chat"])

PROFILE_HEADER = "X-Tailor-Profile-Items"


def _user_scope(
    body: ChatCompletionRequest, scope: TenantScope, users: UserRepository, settings: Settings
) -> UserScope:
    if body.user is not None:
        if settings.create_users_on_chat:
            return users.resolve_or_create(scope, body.user)
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
        passthrough=body.passthrough(),
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


def _message(done: Completion) -> AssistantMessage:
    if done.message is None:
        return AssistantMessage(content=done.text)
    try:
        return AssistantMessage.model_validate({**done.message, "role": "assistant"})
    except ValidationError as exc:
        raise BackendFailed(f"model server sent an unusable message: {exc}") from exc


def _usage(done: Completion) -> Usage:
    if done.usage and {"prompt_tokens", "completion_tokens", "total_tokens"} <= done.usage.keys():
        try:
            return Usage.model_validate(done.usage)
        except ValidationError as exc:
            raise BackendFailed(f"model server sent an unusable usage: {exc}") from exc
    return Usage(
        prompt_tokens=done.prompt_tokens,
        completion_tokens=done.completion_tokens,
        total_tokens=done.prompt_tokens + done.completion_tokens,
    )


def _estimated_usage(prepared: PreparedChat, text: str) -> dict[str, int]:
    """For a server that streamed without reporting usage though asked to."""
    prompt = sum(estimate_tokens(m.content) + 4 for m in prepared.messages)
    completion = estimate_tokens(text)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


@router.post(
    "/chat/completions",
    response_model=ChatCompletionResponse,
    summary="OpenAI-compatible chat completion, conditioned on the end user's profile",
    description=(
        "With `stream: true` the answer is server-sent events of `chat.completion.chunk` "
        f"objects, ending with `data: [DONE]`. The `{PROFILE_HEADER}` header and the `tailor` "
        "field (first chunk when streaming) list the profile items used. Every documented "
        "OpenAI field is accepted: an OpenAI-compatible backend receives the app's `tools`, "
        "`tool_choice`, `response_format`, `logprobs`, `stream_options` and the rest "
        "unchanged (not `user`, which names the end user to Tailor), and its tool calls, "
        "logprobs, finish reason and usage come back unchanged. The embedded model answers "
        "422 `unsupported_parameter` for a field it cannot honour. An unknown `user` is 404 "
        "`user_not_found`, or is created when TAILOR_CREATE_USERS_ON_CHAT is on."
    ),
    responses={
        200: {
            "description": "a chat.completion, or with `stream: true` server-sent events",
            "content": {
                "text/event-stream": {
                    "schema": {
                        "description": "`data:` events, each a chat.completion.chunk "
                        "object, the last `[DONE]`"
                    }
                }
            },
        },
        401: {"model": ErrorResponse},
        404: {"model": ErrorResponse},
        422: {
            "model": ErrorResponse,
            "description": "invalid, unsupported_parameter, or "
            "backend_rejected_request (the model server refused it as invalid)",
        },
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
    user = _user_scope(body, scope, users, settings)
    options = settings.context_options()
    generation = _generation(body, settings)
    messages = [
        ChatMessage(
            role=m.role, content=m.text(), sent=m.model_dump(mode="json", exclude_unset=True)
        )
        for m in body.messages
    ]
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
                    message=_message(done),
                    logprobs=dict(done.logprobs) if done.logprobs is not None else None,
                    finish_reason=done.finish_reason,
                )
            ],
            usage=_usage(done),
            tailor=info,
        )
        return JSONResponse(response.model_dump(mode="json"), headers=headers)

    deltas = chat.stream(prepared, generation)
    include_usage = bool((body.stream_options or {}).get("include_usage"))

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
        usage: dict[str, Any] = {}
        text: list[str] = []
        try:
            for delta in deltas:
                piece = dict(delta.fields)
                if delta.text:
                    piece["content"] = delta.text
                    text.append(delta.text)
                if piece or delta.logprobs is not None:
                    choice = {"index": 0, "delta": piece, "finish_reason": None}
                    if delta.logprobs is not None:
                        choice["logprobs"] = dict(delta.logprobs)
                    yield _sse({**base, "choices": [choice]})
                finish = delta.finish_reason or finish
                usage = delta.usage or usage
        except TailorError as exc:
            # The status line has gone out: the model's failure midway is reported the
            # way OpenAI-compatible streams report errors, as an `error` event.
            yield _sse(error_body(exc.code, exc.message))
            return
        yield _sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
        if include_usage:
            usage = usage or _estimated_usage(prepared, "".join(text))
            yield _sse({**base, "choices": [], "usage": usage})
        yield _sse("[DONE]")

    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)


def _model_entry(chat: ChatService) -> ModelPublic:
    # `created` is unknown for a model Tailor did not make; 0 says so, and keeps every
    # replica's answer the same.
    return ModelPublic(id=chat.model_id, created=0, owned_by="tailor")


@router.get(
    "/models",
    response_model=ModelList,
    summary="The model behind /v1/chat/completions, in OpenAI's list shape",
    description=(
        "One entry: the configured backend's model (the embedded GGUF model's id, or "
        "TAILOR_MODEL_NAME for an OpenAI-compatible server). Clients and chat UIs call this "
        "first; the `model` they then send is echoed, the backend decides."
    ),
    responses={401: {"model": ErrorResponse}},
)
def list_models(_scope: ScopeDep, chat: ChatDep) -> ModelList:
    return ModelList(data=[_model_entry(chat)])


@router.get(
    "/models/{model_id:path}",
    response_model=ModelPublic,
    summary="One model, as OpenAI's retrieve-model answers",
    description="The configured backend's model; any other id is 404 `model_not_found`.",
    responses={401: {"model": ErrorResponse}, 404: {"model": ErrorResponse}},
)
def get_model(
    model_id: Annotated[str, Path(max_length=200, description="a model id from GET /v1/models")],
    _scope: ScopeDep,
    chat: ChatDep,
) -> ModelPublic:
    if model_id != chat.model_id:
        raise NotFound(
            f"no model {model_id!r}; this server serves {chat.model_id!r}", code="model_not_found"
        )
    return _model_entry(chat)
