"""Writes a restored profile (an import) in one transaction.

All or nothing: any failure rolls everything back, so retrying an import that failed
cannot duplicate what a first try had half written. Idempotent: each restored row
records the exported item it came from (`imported_item`, unique per user), and items
already imported into this user are skipped. Bounded: queued edits it adds count
against the tenant's edit queue, checked under the same tenant lock as ordinary edits.
Embeddings are computed by the caller before the transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from store.changes import record_user_change
from store.edits import check_queue
from store.instructions import InstructionEmbeddings, first_version
from store.job_queue import lock_tenant_queue
from store.models import (
    Edit,
    ImportedItem,
    InferenceStatus,
    Instruction,
    InstructionSource,
    InstructionStatus,
    PreferenceExample,
    PreferenceStatus,
)
from store.preferences import new_preference
from store.scope import UserScope

INSTRUCTION = "instruction"
EXAMPLE = "example"
EDIT = "edit"
_QUEUED = (InferenceStatus.pending, InferenceStatus.running)


@dataclass(frozen=True, slots=True)
class RestoredInstruction:
    source_id: uuid.UUID
    text: str
    applies_when: str | None
    always_on: bool
    status: InstructionStatus
    source: InstructionSource
    embeddings: InstructionEmbeddings


@dataclass(frozen=True, slots=True)
class RestoredExample:
    source_id: uuid.UUID | None
    prompt: str
    chosen: str
    rejected: str
    embedding: bytes


@dataclass(frozen=True, slots=True)
class RestoredEdit:
    """An exported edit; unfinished inference (pending, running) is queued again."""

    source_id: uuid.UUID | None
    fields: dict[str, Any]
    embedding: bytes
    preference: tuple[str, PreferenceStatus] | None

    @property
    def status(self) -> InferenceStatus:
        status = InferenceStatus(self.fields["inference_status"])
        return InferenceStatus.pending if status in _QUEUED else status


@dataclass(frozen=True, slots=True)
class RestorePlan:
    model: str
    dim: int
    instructions: list[RestoredInstruction] = field(default_factory=list)
    examples: list[RestoredExample] = field(default_factory=list)
    edits: list[RestoredEdit] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Restored:
    """The rows written (for the vector cache) and what was skipped as already here."""

    instructions: list[Instruction]
    examples: list[PreferenceExample]
    edits: list[Edit]
    preferences: int
    skipped: int


def already_imported(engine: Engine, scope: UserScope) -> set[tuple[str, uuid.UUID]]:
    with Session(engine) as session:
        return _imported(session, scope)


def _imported(session: Session, scope: UserScope) -> set[tuple[str, uuid.UUID]]:
    rows = session.exec(
        select(ImportedItem.kind, ImportedItem.source_id).where(
            col(ImportedItem.tenant_id) == scope.tenant_id,
            col(ImportedItem.user_id) == scope.user_id,
        )
    ).all()
    return {(kind, source_id) for kind, source_id in rows}


class _Writer:
    """Adds rows to one session, remembering their sources."""

    def __init__(self, session: Session, scope: UserScope, done: set[tuple[str, uuid.UUID]]):
        self.session = session
        self.scope = scope
        self.done = done
        self.skipped = 0

    def wanted(self, kind: str, source_id: uuid.UUID | None) -> bool:
        if source_id is not None and (kind, source_id) in self.done:
            self.skipped += 1
            return False
        return True

    def remember(self, kind: str, source_id: uuid.UUID | None, item_id: uuid.UUID) -> None:
        if source_id is None:
            return
        self.done.add((kind, source_id))
        self.session.add(
            ImportedItem(
                tenant_id=self.scope.tenant_id,
                user_id=self.scope.user_id,
                kind=kind,
                source_id=source_id,
                item_id=item_id,
            )
        )


def restore_profile(
    engine: Engine, scope: UserScope, plan: RestorePlan, *, queue_limit: int
) -> Restored:
    with Session(engine, expire_on_commit=False) as session:
        lock_tenant_queue(session, scope.tenant_id)  # also serialises imports per tenant
        out = _Writer(session, scope, _imported(session, scope))
        instructions = [
            _instruction(out, item)
            for item in plan.instructions
            if out.wanted(INSTRUCTION, item.source_id)
        ]
        examples = [
            _example(out, plan, item)
            for item in plan.examples
            if out.wanted(EXAMPLE, item.source_id)
        ]
        wanted_edits = [item for item in plan.edits if out.wanted(EDIT, item.source_id)]
        queued = sum(1 for item in wanted_edits if item.status == InferenceStatus.pending)
        if queued:
            check_queue(session, scope.tenant_id, queued, queue_limit)
        edits = [_edit(out, plan, item) for item in wanted_edits]
        session.commit()
        return Restored(
            instructions=instructions,
            examples=examples,
            edits=edits,
            preferences=sum(1 for edit in edits if edit.preference_id is not None),
            skipped=out.skipped,
        )


def _instruction(out: _Writer, item: RestoredInstruction) -> Instruction:
    """The same first version a create writes (keys and applicability included), with
    the exported status (a disabled item comes back disabled, as version 1)."""
    row = first_version(
        out.scope, item.text, item.applies_when, item.always_on, item.source, item.embeddings
    )
    row.status = item.status
    out.session.add(row)
    record_user_change(out.session, out.scope, INSTRUCTION, row.instruction_id, "imported", 1)
    out.remember(INSTRUCTION, item.source_id, row.instruction_id)
    return row


def _example(out: _Writer, plan: RestorePlan, item: RestoredExample) -> PreferenceExample:
    row = PreferenceExample(
        tenant_id=out.scope.tenant_id,
        user_id=out.scope.user_id,
        prompt=item.prompt,
        chosen=item.chosen,
        rejected=item.rejected,
        created_by_key=out.scope.key_id,
        embedding_model=plan.model,
        embedding_dim=plan.dim,
        prompt_embedding=item.embedding,
    )
    out.session.add(row)
    record_user_change(out.session, out.scope, EXAMPLE, row.id, "imported")
    out.remember(EXAMPLE, item.source_id, row.id)
    return row


def _edit(out: _Writer, plan: RestorePlan, item: RestoredEdit) -> Edit:
    fields = item.fields
    row = Edit(
        tenant_id=out.scope.tenant_id,
        user_id=out.scope.user_id,
        context=fields["context"],
        draft=fields["draft"],
        edited=fields["edited"],
        task=fields.get("task"),
        applied_preference=fields.get("applied_preference"),
        distance=float(fields["distance"]),
        created_by_key=out.scope.key_id,
        embedding_model=plan.model,
        embedding_dim=plan.dim,
        context_embedding=item.embedding,
        inference_status=item.status,
        attempts=int(fields.get("attempts", 0)),
        last_error=fields.get("last_error"),
    )
    if item.preference is not None:
        text, status = item.preference
        preference = new_preference(
            out.session, out.scope, text=text, status=status, edit_id=row.id
        )
        row.preference_id = preference.preference_id
    out.session.add(row)
    record_user_change(out.session, out.scope, EDIT, row.id, "imported")
    out.remember(EDIT, item.source_id, row.id)
    return row
