"""Writes that touch the vector cache: SQL commits first, then the cache is updated,
both under the index manager's writer lock, so a snapshot never sees one without the
other. Embeddings are computed before the lock: no one waits on the model for it."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Sequence

from personalization.applicability import (
    ApplicabilityModel,
    current_applicability,
    resolve_applicability,
)
from personalization.embedder import Embedder
from personalization.text import condition_focus
from store.errors import InvalidInput
from store.examples import COLLECTION as EXAMPLES
from store.examples import ExampleRepository
from store.index_manager import IndexManager
from store.instructions import (
    COLLECTION,
    Applicability,
    InstructionChanges,
    InstructionEmbeddings,
    InstructionRepository,
    row_vectors,
)
from store.models import (
    InferredPreference,
    Instruction,
    InstructionSource,
    InstructionStatus,
    PreferenceExample,
)
from store.scope import TenantScope, UserScope
from store.users import UserRepository
from store.vector_index import encode_vector


class ProfileWriter:
    def __init__(
        self,
        embedder: Embedder,
        instructions: InstructionRepository,
        examples: ExampleRepository,
        users: UserRepository,
        index: IndexManager,
        forget_user: Sequence[Callable[[uuid.UUID], None]] = (),
        applicability: ApplicabilityModel | None = None,
    ) -> None:
        self._applicability = applicability
        self._forget_user = list(forget_user)
        self._embedder = embedder
        self._instructions = instructions
        self._examples = examples
        self._users = users
        self._index = index

    def instruction_keys(
        self,
        text: str,
        applies_when: str | None,
        previous: Applicability | None = None,
        changes: InstructionChanges | None = None,
    ) -> InstructionEmbeddings:
        """Every key of the version being written: the text's and the condition's
        vectors, its applicability (personalization/applicability.py) and the vectors of
        its typical requests, all for this exact text."""
        texts = [text] if not applies_when else [text, condition_focus(applies_when)]
        vectors = self._embedder.embed(texts)
        applicability = requests = None
        if self._applicability is not None:
            applicability = resolve_applicability(
                self._applicability, text, vectors[0], previous, changes or InstructionChanges()
            )
            if applicability.typical_requests:
                requests = b"".join(
                    encode_vector(v) for v in self._embedder.embed(applicability.typical_requests)
                )
        return InstructionEmbeddings(
            model=self._embedder.model_id,
            dim=self._embedder.dim,
            text=encode_vector(vectors[0]),
            condition=encode_vector(vectors[1]) if applies_when else None,
            applicability=applicability,
            requests=requests,
        )

    def mirror(self, row: Instruction) -> None:
        """Make the cache hold exactly this version's vectors, or none if inactive."""
        if row.status != InstructionStatus.active or row.embedding_model != self._embedder.model_id:
            return
        vectors = row_vectors(
            row.embedding_dim, row.text_embedding, row.condition_embedding, row.request_embeddings
        )
        meta = self._instructions.meta(row.always_on, row.kind, row.domains)
        self._index.cache.put(row.user_id, COLLECTION, row.id, vectors, meta)

    def create_instruction(
        self,
        scope: UserScope,
        *,
        text: str,
        applies_when: str | None,
        always_on: bool,
        source: InstructionSource,
        pinned: InstructionChanges | None = None,
    ) -> Instruction:
        """`pinned`: kind, domains or typical requests the user set (else derived)."""
        self._index.require_ready()
        embeddings = self.instruction_keys(text, applies_when, None, pinned)
        with self._index.write_lock:
            row = self._instructions.create(
                scope,
                text=text,
                applies_when=applies_when,
                always_on=always_on,
                source=source,
                embeddings=embeddings,
            )
            self.mirror(row)
        return row

    def update_instruction(
        self,
        scope: UserScope,
        instruction_id: uuid.UUID,
        changes: InstructionChanges,
        *,
        expected: Collection[int] | None = None,
    ) -> Instruction:
        """The version read here is the one embedded and the one the write replaces:
        if another writer got there first, the repository answers 409 instead of
        storing this text's vectors (or that one's) on the wrong version."""
        self._index.require_ready()
        current = self._instructions.get(scope, instruction_id)
        return self._next_version(scope, current, changes, expected)

    def restore_instruction(
        self,
        scope: UserScope,
        instruction_id: uuid.UUID,
        version: int,
        *,
        expected: Collection[int] | None = None,
    ) -> Instruction:
        """Write a new version equal to an earlier one (InstructionChanges.restoring),
        through the same conditional write as any update, keyed for the restored text.
        Restoring the current version is refused (422): it would change nothing."""
        self._index.require_ready()
        earlier = self._instructions.version(scope, instruction_id, version)
        current = self._instructions.get(scope, instruction_id)
        if current.version == earlier.version:
            raise InvalidInput(
                f"version {version} is the current version; restore an earlier one",
                code="restore_current_version",
            )
        return self._next_version(scope, current, InstructionChanges.restoring(earlier), expected)

    def _next_version(
        self,
        scope: UserScope,
        current: Instruction,
        changes: InstructionChanges,
        expected: Collection[int] | None,
    ) -> Instruction:
        embeddings: InstructionEmbeddings | None = None
        if changes.rekeys:
            text = changes.text if changes.text is not None else current.text
            applies = current.applies_when if changes.applies_when is None else changes.applies_when
            embeddings = self.instruction_keys(
                text, applies or None, current_applicability(current), changes
            )
        with self._index.write_lock:
            old, new = self._instructions.update(
                scope, current, changes, embeddings, expected=expected
            )
            self._index.cache.remove(old.user_id, COLLECTION, old.id)
            self.mirror(new)
        return new

    def delete_instruction(
        self,
        scope: UserScope,
        instruction_id: uuid.UUID,
        *,
        expected: Collection[int] | None = None,
    ) -> None:
        self._index.require_ready()
        with self._index.write_lock:
            row = self._instructions.delete(scope, instruction_id, expected=expected)
            self._index.cache.remove(row.user_id, COLLECTION, row.id)

    def promote_preference(
        self,
        scope: UserScope,
        preference: InferredPreference,
        *,
        applies_when: str | None,
        always_on: bool,
    ) -> tuple[InferredPreference, Instruction]:
        """The instruction and the preference's promoted version commit together, or
        neither does (another promote of the same preference won: 409)."""
        self._index.require_ready()
        embeddings = self.instruction_keys(preference.text, applies_when)
        with self._index.write_lock:
            promoted, row = self._instructions.promote(
                scope,
                preference,
                applies_when=applies_when,
                always_on=always_on,
                embeddings=embeddings,
            )
            self.mirror(row)
        return promoted, row

    def create_example(
        self, scope: UserScope, *, prompt: str, chosen: str, rejected: str
    ) -> PreferenceExample:
        self._index.require_ready()
        vector = self._embedder.embed([prompt])[0]
        with self._index.write_lock:
            row = self._examples.create(
                scope,
                prompt=prompt,
                chosen=chosen,
                rejected=rejected,
                model=self._embedder.model_id,
                dim=self._embedder.dim,
                embedding=encode_vector(vector),
            )
            self._index.cache.put(row.user_id, EXAMPLES, row.id, [(0, vector)])
        return row

    def delete_example(self, scope: UserScope, example_id: uuid.UUID) -> None:
        self._index.require_ready()
        with self._index.write_lock:
            row = self._examples.delete(scope, example_id)
            self._index.cache.remove(row.user_id, EXAMPLES, row.id)

    def delete_user(self, scope: TenantScope, external_id: str) -> None:
        """Rows (by cascade), this replica's memory, and its on-disk snapshot all lose
        the user before this returns: the snapshot is rewritten without them. Other
        replicas learn it from the change log's tombstone (IndexManager.follow)."""
        self._index.require_ready()
        with self._index.write_lock:
            user_id = self._users.delete(scope, external_id)
            self._index.forget_user(user_id)
            for forget in self._forget_user:
                forget(user_id)
        # Outside the write lock: a snapshot takes its own lock first, then that one.
        self._index.snapshot(force=True)
