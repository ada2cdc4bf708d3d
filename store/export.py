"""Everything stored about one user, for `GET /v1/users/{id}/export`: every version of
every item, edits, examples (deleted ones too), the record of recent turns and the
user's audit trail. Embeddings are left out (derived data, recomputed on import), and
so is which worker holds an edit job (the service's bookkeeping, not the user's data).
Every query carries the user's scope."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, col, select

from store.clock import utcnow
from store.models import (
    AppUser,
    CaptureJob,
    ChangeLog,
    Edit,
    InferredPreference,
    Instruction,
    PreferenceExample,
    Suggestion,
    TurnRecord,
)
from store.scope import UserScope

FORMAT = "tailor-export-v1"
_DERIVED = {
    "text_embedding",
    "condition_embedding",
    "request_embeddings",
    "prompt_embedding",
    "context_embedding",
    "text_key",
}
_JOB_BOOKKEEPING = {"lease_owner", "lease_expires_at"}  # which worker holds an edit job


def _rows(
    session: Session, model: type[SQLModel], scope: UserScope, *order: Any
) -> list[dict[str, Any]]:
    table: Any = model
    query = select(model).where(
        col(table.tenant_id) == scope.tenant_id, col(table.user_id) == scope.user_id
    )
    return [
        row.model_dump(mode="json", exclude=_DERIVED | _JOB_BOOKKEEPING, warnings=False)
        for row in session.exec(query.order_by(*order)).all()
    ]


def export_user(engine: Engine, scope: UserScope) -> dict[str, Any]:
    with Session(engine) as session:
        user = session.exec(
            select(AppUser).where(AppUser.tenant_id == scope.tenant_id, AppUser.id == scope.user_id)
        ).one()
        return {
            "format": FORMAT,
            "exported_at": utcnow().isoformat(),
            "user": {"id": user.external_id, "created_at": user.created_at.isoformat()},
            "instructions": _rows(
                session, Instruction, scope, col(Instruction.created_at), col(Instruction.version)
            ),
            "examples": _rows(session, PreferenceExample, scope, col(PreferenceExample.created_at)),
            "edits": _rows(session, Edit, scope, col(Edit.created_at)),
            "preferences": _rows(
                session,
                InferredPreference,
                scope,
                col(InferredPreference.created_at),
                col(InferredPreference.version),
            ),
            "turns": _rows(
                session, TurnRecord, scope, col(TurnRecord.at).desc(), col(TurnRecord.id).desc()
            ),
            "suggestions": _rows(
                session, Suggestion, scope, col(Suggestion.created_at), col(Suggestion.id)
            ),
            "captures": _rows(
                session, CaptureJob, scope, col(CaptureJob.created_at), col(CaptureJob.id)
            ),
            "audit": _rows(session, ChangeLog, scope, col(ChangeLog.seq)),
        }
