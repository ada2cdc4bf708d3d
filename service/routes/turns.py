"""The user's recent turns: which profile items each used, and why."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from service.deps import PortsDep, SettingsDep, TurnsDep, UserScopeDep
from service.schemas import ErrorResponse, ProfileItemUsed, TurnList, TurnPublic
from store.models import TurnRecord

router = APIRouter(
    prefix="/v1/users/{user_id}",
    tags=["privacy"],
    responses={401: {"model": ErrorResponse}, 404: {"model": ErrorResponse}},
)


def turn_public(row: TurnRecord) -> TurnPublic:
    return TurnPublic(
        id=row.id,
        at=row.at,
        endpoint="chat" if row.endpoint == "chat" else "context",
        items=[ProfileItemUsed.model_validate(item) for item in row.items],
        message=row.message,
    )


@router.get(
    "/turns",
    response_model=TurnList,
    summary="Why did the assistant do that: the profile items used on recent turns",
    description=(
        "Newest first: for each recent `/context` or chat turn, when it was and which "
        "standing instructions (id, version, reason, score), preference examples and "
        "inferred preferences it used. No message text is kept unless the operator set "
        "`TAILOR_TURNS_KEEP_MESSAGE` (then the last user message, clipped to 500 "
        "characters). The server keeps the last `TAILOR_TURNS_KEPT` turns per user "
        "(`kept`, default 50); they are exported and deleted with the user."
    ),
)
def recent_turns(
    scope: UserScopeDep,
    turns: TurnsDep,
    settings: SettingsDep,
    ports: PortsDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> TurnList:
    ports.flush_turn_records()
    rows = turns.recent(scope, limit=limit)
    return TurnList(items=[turn_public(r) for r in rows], kept=settings.turns_kept)
