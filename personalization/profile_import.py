"""Restores a profile from an export document into an existing (normally empty) user:
the current version of each instruction, the live examples, and every edit with its
preference's current text and status. Everything is re-embedded with the running
model, through the same write paths as ordinary requests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from personalization.embedder import Embedder
from personalization.profile_writes import ProfileWriter
from store.edits import COLLECTION as EDITS
from store.edits import EditRepository
from store.index_manager import IndexManager
from store.instructions import InstructionChanges
from store.models import InstructionKind, InstructionSource, InstructionStatus, PreferenceStatus
from store.scope import UserScope
from store.vector_index import encode_vector


@dataclass(frozen=True, slots=True)
class ImportCounts:
    instructions: int
    examples: int
    edits: int
    preferences: int


def _latest(rows: Sequence[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """The highest version of each item, in first-seen order."""
    latest: dict[str, dict[str, Any]] = {}
    for row in rows:
        current = latest.get(row[key])
        if current is None or row["version"] > current["version"]:
            latest[row[key]] = row
    return list(latest.values())


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
        edits: EditRepository,
        index: IndexManager,
    ) -> None:
        self._embedder = embedder
        self._writer = writer
        self._edits = edits
        self._index = index

    def restore(self, scope: UserScope, document: dict[str, Any]) -> ImportCounts:
        self._index.require_ready()
        instructions = 0
        for row in _latest(document.get("instructions", []), "instruction_id"):
            if row["status"] == InstructionStatus.deleted:
                continue
            made = self._writer.create_instruction(
                scope,
                text=row["text"],
                applies_when=row.get("applies_when"),
                always_on=bool(row.get("always_on")),
                source=InstructionSource(row.get("source", "app")),
                pinned=_pinned(row),
            )
            if row["status"] == InstructionStatus.disabled:
                self._writer.update_instruction(
                    scope,
                    made.instruction_id,
                    InstructionChanges(status=InstructionStatus.disabled),
                )
            instructions += 1
        examples = 0
        for row in document.get("examples", []):
            if row.get("valid_to") is None:
                self._writer.create_example(
                    scope, prompt=row["prompt"], chosen=row["chosen"], rejected=row["rejected"]
                )
                examples += 1
        preferences = {
            row["preference_id"]: row
            for row in _latest(document.get("preferences", []), "preference_id")
        }
        edits = restored_preferences = 0
        for row in document.get("edits", []):
            preference = preferences.get(row.get("preference_id") or "")
            vector = self._embedder.embed([row["context"]])[0]
            with self._index.write_lock:
                edit = self._edits.restore(
                    scope,
                    fields=row,
                    model=self._embedder.model_id,
                    dim=self._embedder.dim,
                    embedding=encode_vector(vector),
                    preference=(
                        (preference["text"], PreferenceStatus(preference["status"]))
                        if preference
                        else None
                    ),
                )
                if edit.preference_id is not None:
                    self._index.cache.put(edit.user_id, EDITS, edit.id, [(0, vector)])
                    restored_preferences += 1
            edits += 1
        return ImportCounts(instructions, examples, edits, restored_preferences)
