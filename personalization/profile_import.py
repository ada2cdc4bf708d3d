"""Restores a profile from an export document into an existing user: the current
version of each instruction, the live examples, and every edit with its preference's
current text and status. Everything is re-embedded with the running model (in batches,
before any write), then written in one transaction (store/profile_restore.py): a failed
import writes nothing, items already imported into this user (by their exported ids)
are skipped, and queued edits count against the tenant's edit queue."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine

from personalization.embedder import Embedder
from personalization.profile_writes import ProfileWriter
from store.edits import COLLECTION as EDITS
from store.examples import COLLECTION as EXAMPLES
from store.index_manager import IndexManager
from store.instructions import InstructionChanges
from store.models import InstructionKind, InstructionSource, InstructionStatus, PreferenceStatus
from store.profile_restore import (
    EDIT,
    EXAMPLE,
    INSTRUCTION,
    RestoredEdit,
    RestoredExample,
    RestoredInstruction,
    RestorePlan,
    already_imported,
    restore_profile,
)
from store.scope import UserScope
from store.vector_index import decode_vector, encode_vector

_BATCH = 256


@dataclass(frozen=True, slots=True)
class ImportCounts:
    instructions: int
    examples: int
    edits: int
    preferences: int
    skipped: int


def _latest(rows: Sequence[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """The highest version of each item, in first-seen order."""
    latest: dict[str, dict[str, Any]] = {}
    for row in rows:
        current = latest.get(row[key])
        if current is None or row["version"] > current["version"]:
            latest[row[key]] = row
    return list(latest.values())


def _source(row: dict[str, Any], key: str) -> uuid.UUID | None:
    value = row.get(key)
    return uuid.UUID(str(value)) if value else None


def _pinned(row: dict[str, Any]) -> InstructionChanges:
    """What the user set on the exported version; the rest is derived again."""
    kind = row.get("kind") if row.get("kind_set_by") == "user" else None
    by_user = row.get("applicability_set_by") == "user"
    return InstructionChanges(
        kind=InstructionKind(kind) if kind else None,
        domains=list(row.get("domains") or []) if by_user else None,
        typical_requests=list(row.get("typical_requests") or []) if by_user else None,
    )


class ProfileImporter:
    def __init__(
        self,
        embedder: Embedder,
        writer: ProfileWriter,
        engine: Engine,
        index: IndexManager,
        *,
        queue_limit: int,
    ) -> None:
        self._embedder = embedder
        self._writer = writer
        self._engine = engine
        self._index = index
        self._queue_limit = queue_limit

    def _embed(self, texts: list[str]) -> list[bytes]:
        out: list[bytes] = []
        for start in range(0, len(texts), _BATCH):
            batch = self._embedder.embed(texts[start : start + _BATCH])
            out.extend(encode_vector(vector) for vector in batch)
        return out

    def restore(self, scope: UserScope, document: dict[str, Any]) -> ImportCounts:
        self._index.require_ready()
        # Only to spare embedding what is here already; the transaction decides.
        seen = already_imported(self._engine, scope)
        skipped = 0

        def new(kind: str, source_id: uuid.UUID | None) -> bool:
            nonlocal skipped
            if source_id is not None and (kind, source_id) in seen:
                skipped += 1
                return False
            return True

        instructions = [
            row
            for row in _latest(document.get("instructions", []), "instruction_id")
            if row["status"] != InstructionStatus.deleted
            and new(INSTRUCTION, _source(row, "instruction_id"))
        ]
        examples = [
            row
            for row in document.get("examples", [])
            if row.get("valid_to") is None and new(EXAMPLE, _source(row, "id"))
        ]
        edits = [row for row in document.get("edits", []) if new(EDIT, _source(row, "id"))]
        preferences = {
            row["preference_id"]: row
            for row in _latest(document.get("preferences", []), "preference_id")
        }

        texts: list[str] = [row["prompt"] for row in examples]
        texts.extend(row["context"] for row in edits)
        vectors = iter(self._embed(texts))

        plan = RestorePlan(model=self._embedder.model_id, dim=self._embedder.dim)
        for row in instructions:
            # The writer's own keys (vectors, kind, domains, typical requests), with
            # what the user pinned kept and the rest derived again for this text.
            keys = self._writer.instruction_keys(
                row["text"], row.get("applies_when"), None, _pinned(row)
            )
            plan.instructions.append(
                RestoredInstruction(
                    source_id=uuid.UUID(str(row["instruction_id"])),
                    text=row["text"],
                    applies_when=row.get("applies_when"),
                    always_on=bool(row.get("always_on")),
                    status=InstructionStatus(row["status"]),
                    source=InstructionSource(row.get("source", "app")),
                    embeddings=keys,
                )
            )
        for row in examples:
            plan.examples.append(
                RestoredExample(
                    source_id=_source(row, "id"),
                    prompt=row["prompt"],
                    chosen=row["chosen"],
                    rejected=row["rejected"],
                    embedding=next(vectors),
                )
            )
        for row in edits:
            preference = preferences.get(row.get("preference_id") or "")
            plan.edits.append(
                RestoredEdit(
                    source_id=_source(row, "id"),
                    fields=row,
                    embedding=next(vectors),
                    preference=(
                        (preference["text"], PreferenceStatus(preference["status"]))
                        if preference
                        else None
                    ),
                )
            )

        with self._index.write_lock:
            done = restore_profile(self._engine, scope, plan, queue_limit=self._queue_limit)
            cache = self._index.cache
            for instruction in done.instructions:
                self._writer.mirror(instruction)
            for example in done.examples:
                vector = decode_vector(example.prompt_embedding, plan.dim)
                cache.put(example.user_id, EXAMPLES, example.id, [(0, vector)])
            for edit in done.edits:
                if edit.preference_id is not None:
                    vector = decode_vector(edit.context_embedding, plan.dim)
                    cache.put(edit.user_id, EDITS, edit.id, [(0, vector)])
        return ImportCounts(
            instructions=len(done.instructions),
            examples=len(done.examples),
            edits=len(done.edits),
            preferences=done.preferences,
            skipped=skipped + done.skipped,
        )
