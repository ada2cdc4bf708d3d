"""Annotated dependency aliases: route signatures stay short and typed."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

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


def get_ports(request: Request) -> Ports:
    ports: Ports = request.app.state.ports
    return ports


PortsDep = Annotated[Ports, Depends(get_ports)]


def _settings(ports: PortsDep) -> Settings:
    return ports.settings


def _keys(ports: PortsDep) -> KeyRepository:
    return ports.keys


def _users(ports: PortsDep) -> UserRepository:
    return ports.users


def _instructions(ports: PortsDep) -> InstructionRepository:
    return ports.instructions


def _examples(ports: PortsDep) -> ExampleRepository:
    return ports.examples


def _edits(ports: PortsDep) -> EditRepository:
    return ports.edits


def _preferences(ports: PortsDep) -> PreferenceRepository:
    return ports.preferences


def _edit_service(ports: PortsDep) -> EditService:
    return ports.edit_service


def _importer(ports: PortsDep) -> ProfileImporter:
    return ports.importer


def _writer(ports: PortsDep) -> ProfileWriter:
    return ports.writer


def _context(ports: PortsDep) -> ContextBuilder:
    return ports.context


def _index(ports: PortsDep) -> IndexManager:
    return ports.index


def _chat(ports: PortsDep) -> ChatService:
    return ports.chat


def _turns(ports: PortsDep) -> TurnRepository:
    return ports.turns


def _turn_recorder(ports: PortsDep) -> TurnRecorder:
    return ports.turn_recorder


def _captures(ports: PortsDep) -> CaptureRepository:
    return ports.captures


def _capture_service(ports: PortsDep) -> CaptureService:
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


def get_scope(ports: PortsDep, credentials: Credentials) -> TenantScope:
    if credentials is None:
        raise Unauthorized("send an API key as `Authorization: Bearer <key>`")
    scope = ports.keys.authenticate(credentials.credentials)
    if ports.rate_limiter is not None and scope.key_id is not None:
        ports.rate_limiter.check(scope.key_id)
    return scope


ScopeDep = Annotated[TenantScope, Depends(get_scope)]


def tenant_wide(scope: ScopeDep) -> TenantScope:
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


def require_admin(settings: SettingsDep, credentials: Credentials) -> None:
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
