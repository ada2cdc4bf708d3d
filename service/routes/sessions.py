"""Profile-page sessions: the app's server trades its tenant-wide key for a short-lived
key bound to one end user, and hands the person a link to /ui/ that carries it.

A session is an ordinary user-bound API key (named `SESSION_KEY_NAME`, with an
expiry), so every scope rule that holds for user-bound keys holds for it: it reaches
that user's routes only, and tenant routes (users, keys, sessions) answer 403."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from urllib.parse import quote

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from service.deps import (
    KeysDep,
    PortsDep,
    ScopeDep,
    SettingsDep,
    TenantWideScopeDep,
    UserIdPath,
    UserScopeDep,
)
from service.schemas import ErrorResponse
from service.settings import Settings
from store.clock import utcnow
from store.keys import KeyRepository
from store.scope import TenantScope

SESSION_KEY_NAME = "profile-session"

router = APIRouter(
    prefix="/v1/users/{user_id}/sessions",
    tags=["sessions"],
    responses={401: {"model": ErrorResponse}, 404: {"model": ErrorResponse}},
)


class SessionCreated(BaseModel):
    id: uuid.UUID = Field(description="the session's id, for DELETE .../sessions/{id}")
    url: str = Field(
        description="the profile page with the token in the fragment (never sent to a server)",
        examples=["http://127.0.0.1:8000/ui/#user=user-42&session=...&token=tlr_..."],
    )
    token: str = Field(description="a user-bound API key; shown once", examples=["tlr_..."])
    expires_at: datetime


def profile_url(settings: Settings, user_id: str, session_id: uuid.UUID, token: str) -> str:
    """The token rides in the fragment: browsers send neither it to the server nor it in
    a Referer, so it stays out of access logs and third-party requests."""
    fragment = f"user={quote(user_id, safe='')}&session={session_id}&token={token}"
    return f"{settings.profile_base_url}/ui/#{fragment}"


def mint_session(
    keys: KeyRepository, scope: TenantScope, settings: Settings, user_id: str
) -> SessionCreated:
    """One way to open a session, for the route and for `tailor link`."""
    expires_at = utcnow() + timedelta(seconds=settings.session_ttl_s)
    issued = keys.issue(
        scope, name=SESSION_KEY_NAME, external_user_id=user_id, expires_at=expires_at
    )
    return SessionCreated(
        id=issued.key.id,
        url=profile_url(settings, user_id, issued.key.id, issued.secret),
        token=issued.secret,
        expires_at=expires_at,
    )


@router.post(
    "",
    status_code=201,
    response_model=SessionCreated,
    summary="Mint a short-lived link to the user's own profile page",
    description=(
        "Issues a key bound to this user that expires after `TAILOR_SESSION_TTL_S` "
        "seconds, and the `/ui/` link that carries it. Give the link to that person "
        "only; it can read and change their profile, export it and delete it, and "
        "nothing else. Needs a tenant-wide key."
    ),
    responses={403: {"model": ErrorResponse}},
)
def create_session(
    user_id: UserIdPath, scope: TenantWideScopeDep, keys: KeysDep, settings: SettingsDep
) -> SessionCreated:
    return mint_session(keys, scope, settings, user_id)


@router.delete(
    "/{session_id}",
    status_code=204,
    summary="End a profile-page session (the app's server, or the page signing out)",
    description=(
        "A tenant-wide key may end any session of the user; the session's own token may "
        "end only itself. Other keys, even ones bound to the user, are not sessions and "
        "answer 404 here (revoke them with DELETE /v1/keys/{id})."
    ),
)
def end_session(
    session_id: uuid.UUID, scope: ScopeDep, user: UserScopeDep, keys: KeysDep, ports: PortsDep
) -> Response:
    keys.revoke_session(scope, user, session_id, name=SESSION_KEY_NAME)
    ports.key_cache.forget(session_id)
    return Response(status_code=204)
