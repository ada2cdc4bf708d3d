"""Annotated dependency aliases: route signatures stay short and typed.

A dependency that only reads memory is `async def`: FastAPI runs a plain `def` one in
the threadpool, and each such hop (a thread wake-up and a return to the event loop)
cost more than the work itself; a turn passed through eight of them. Dependencies
that read SQL stay off the event loop (plain `def`, or a threadpool call on a miss)."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from personalization.chat import ChatService
from personalization.context import ContextBuilder
from personalization.edits import EditService
from personalization.profile_import import ProfileImporter
from personalization.profile_writes import ProfileWriter
from personalization.provenance import TurnRecorder
from personalization.suggestions import CaptureService
from service.ports import Ports
from service.settings import Settings
from store.captures import CaptureRepository
from store.edits import EditRepository
from store.errors import Forbidden, Unauthorized
from store.examples import ExampleRepository
from store.index_manager import IndexManager
from store.instructions import InstructionRepository
from store.keys import KeyRepository
from store.preferences import PreferenceRepository
from store.scope import TenantScope, UserScope
from store.turns import TurnRepository
from store.users import UserRepository

USER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"

_bearer = HTTPBearer(auto_error=False, description="Tailor API key: `Bearer tlr_...`")


async def get_ports(request: Request) -> Ports:
    ports: Ports = request.app.state.ports
    return ports


PortsDep = Annotated[Ports, Depends(get_ports)]


async def _settings(ports: PortsDep) -> Settings:
    return ports.settings


async def _keys(ports: PortsDep) -> KeyRepository:
    return ports.keys


async def _users(ports: PortsDep) -> UserRepository:
    return ports.users


async def _instructions(ports: PortsDep) -> InstructionRepository:
    return ports.instructions


async def _examples(ports: PortsDep) -> ExampleRepository:
    return ports.examples


async def _edits(ports: PortsDep) -> EditRepository:
    return ports.edits


async def _preferences(ports: PortsDep) -> PreferenceRepository:
    return ports.preferences


async def _edit_service(ports: PortsDep) -> EditService:
    return ports.edit_service


async def _importer(ports: PortsDep) -> ProfileImporter:
    return ports.importer


async def _writer(ports: PortsDep) -> ProfileWriter:
    return ports.writer


async def _context(ports: PortsDep) -> ContextBuilder:
    return ports.context


async def _index(ports: PortsDep) -> IndexManager:
    return ports.index


async def _chat(ports: PortsDep) -> ChatService:
    return ports.chat


async def _turns(ports: PortsDep) -> TurnRepository:
    return ports.turns


async def _turn_recorder(ports: PortsDep) -> TurnRecorder:
    return ports.turn_recorder


async def _captures(ports: PortsDep) -> CaptureRepository:
    return ports.captures


async def _capture_service(ports: PortsDep) -> CaptureService:
    return ports.capture_service


SettingsDep = Annotated[Settings, Depends(_settings)]
KeysDep = Annotated[KeyRepository, Depends(_keys)]
UsersDep = Annotated[UserRepository, Depends(_users)]
InstructionsDep = Annotated[InstructionRepository, Depends(_instructions)]
ExamplesDep = Annotated[ExampleRepository, Depends(_examples)]
WriterDep = Annotated[ProfileWriter, Depends(_writer)]
EditsDep = Annotated[EditRepository, Depends(_edits)]
PreferencesDep = Annotated[PreferenceRepository, Depends(_preferences)]
EditServiceDep = Annotated[EditService, Depends(_edit_service)]
ImporterDep = Annotated[ProfileImporter, Depends(_importer)]
ContextDep = Annotated[ContextBuilder, Depends(_context)]
IndexDep = Annotated[IndexManager, Depends(_index)]
ChatDep = Annotated[ChatService, Depends(_chat)]
TurnsDep = Annotated[TurnRepository, Depends(_turns)]
TurnRecorderDep = Annotated[TurnRecorder, Depends(_turn_recorder)]
CapturesDep = Annotated[CaptureRepository, Depends(_captures)]
CaptureServiceDep = Annotated[CaptureService, Depends(_capture_service)]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def authenticate(ports: Ports, raw_key: str) -> TenantScope:
    """The key's scope from SQL, remembered in the key cache (service/key_cache.py)."""
    read_at = ports.key_cache.now()
    scope, expires_at = ports.keys.authenticate_until(raw_key)
    ports.key_cache.put(raw_key, scope, expires_at, read_at)
    return scope


async def get_scope(ports: PortsDep, credentials: Credentials) -> TenantScope:
    """From the key cache when it holds the key, else read in the threadpool."""
    if credentials is None:
        raise Unauthorized("send an API key as `Authorization: Bearer <key>`")
    raw_key = credentials.credentials
    scope = ports.key_cache.get(raw_key)
    if scope is None:
        scope = await run_in_threadpool(authenticate, ports, raw_key)
    if ports.rate_limiter is not None and scope.key_id is not None:
        ports.rate_limiter.check(scope.key_id)
    return scope


ScopeDep = Annotated[TenantScope, Depends(get_scope)]


async def tenant_wide(scope: ScopeDep) -> TenantScope:
    scope.require_tenant_wide()
    return scope


TenantWideScopeDep = Annotated[TenantScope, Depends(tenant_wide)]

UserIdPath = Annotated[
    str,
    Path(
        pattern=USER_ID_PATTERN,
        description="the app's own id for the end user",
        examples=["user-42"],
    ),
]


def get_user_scope(scope: ScopeDep, users: UsersDep, user_id: UserIdPath) -> UserScope:
    return users.resolve(scope, user_id)


UserScopeDep = Annotated[UserScope, Depends(get_user_scope)]


def get_turn_user_scope(
    scope: ScopeDep, users: UsersDep, settings: SettingsDep, user_id: UserIdPath
) -> UserScope:
    """A chat turn's user: created on first use where TAILOR_CREATE_USERS_ON_CHAT is on."""
    if settings.create_users_on_chat:
        return users.resolve_or_create(scope, user_id)
    return users.resolve(scope, user_id)


TurnUserScopeDep = Annotated[UserScope, Depends(get_turn_user_scope)]


async def require_admin(settings: SettingsDep, credentials: Credentials) -> None:
    token = settings.admin_token
    if token is None:
        raise Forbidden(
            "tenant creation over HTTP is disabled; "
            "set TAILOR_ADMIN_TOKEN or use `tailor bootstrap`",
            code="admin_disabled",
        )
    presented = credentials.credentials if credentials else ""
    if not hmac.compare_digest(presented.encode(), token.get_secret_value().encode()):
        raise Unauthorized("admin token required", code="invalid_admin_token")


AdminDep = Annotated[None, Depends(require_admin)]
