"""Recording edits and acting on the preferences inferred from them.

Recording never waits for the model: the edit (with its context embedding) is stored
and queued, the worker is woken, and the caller gets the edit id at once. A trivial
edit (normalized word edit distance at or below a small threshold) needs no inference:
if the app says which preference conditioned the draft, CIPHER stores that preference
again for this context, as accepted."""

from __future__ import annotations

import uuid
from collections.abc import Collection

from personalization.edit_distance import normalized_edit_distance
from personalization.edit_worker import EditWorker
from personalization.embedder import Embedder
from personalization.profile_writes import ProfileWriter
from store.edits import COLLECTION, EditRepository
from store.index_manager import IndexManager
from store.models import (
    Edit,
    InferenceStatus,
    InferredPreference,
    Instruction,
)
from store.preferences import PreferenceRepository
from store.scope import UserScope
from store.vector_index import encode_vector
from store.versioning import check_expected


class EditService:
    def __init__(
        self,
        embedder: Embedder,
        edits: EditRepository,
        preferences: PreferenceRepository,
        writer: ProfileWriter,
        index: IndexManager,
        worker: EditWorker,
        *,
        trivial_distance: float,
        queue_limit: int,
    ) -> None:
        self._embedder = embedder
        self._edits = edits
        self._preferences = preferences
        self._writer = writer
        self._index = index
        self._worker = worker
        self._trivial = trivial_distance
        self._queue_limit = queue_limit

    def record(
        self,
        scope: UserScope,
        *,
        context: str,
        draft: str,
        edited: str,
        task: str | None,
        applied_preference: str | None,
    ) -> Edit:
        self._index.require_ready()
        distance = normalized_edit_distance(draft, edited)
        status = InferenceStatus.skipped if distance <= self._trivial else InferenceStatus.pending
        vector = self._embedder.embed([context])[0]
        with self._index.write_lock:
            edit, preference = self._edits.create(
                scope,
                context=context,
                draft=draft,
                edited=edited,
                task=task,
                applied_preference=applied_preference,
                distance=distance,
                status=status,
                model=self._embedder.model_id,
                dim=self._embedder.dim,
                embedding=encode_vector(vector),
                queue_limit=self._queue_limit,
            )
            if preference is not None:
                self._index.cache.put(edit.user_id, COLLECTION, edit.id, [(0, vector)])
        if status == InferenceStatus.pending:
            self._worker.wake()
        return edit

    def promote(
        self,
        scope: UserScope,
        preference_id: uuid.UUID,
        *,
        applies_when: str | None,
        always_on: bool,
        expected: Collection[int] | None = None,
    ) -> tuple[InferredPreference, Instruction]:
        """Make the preference a standing instruction; the preference is kept, marked
        promoted, and no longer applied on its own (it would be said twice). Exactly
        once: the transition is conditional on the version read here (see
        InstructionRepository.promote)."""
        current = self._preferences.get(scope, preference_id)
        check_expected("preference", current, expected)
        return self._writer.promote_preference(
            scope, current, applies_when=applies_when, always_on=always_on
        )
