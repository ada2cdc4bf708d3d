"""Writes that touch the vector cache: SQL commits first, then the cache is updated,
both under the index manager's writer lock, so a snapshot never sees one without the
other. Embeddings are computed before the lock: no one waits on the model for it."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence

from personalization.applicability import (
    ApplicabilityModel,
    current_applicability,
    resolve_applicability,
)
from personalization.embedder import Embedder
from personalization.text import condition_focus
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
from store.models import Instruction, InstructionSource, InstructionStatus, PreferenceExample
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

    def _embed(
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

    def _mirror(self, row: Instruction) -> None:
        """Make the cache hold exactly this version's vectors, or none if inactive."""
        if row.status != InstructionStatus.active or row.embedding_model != self._embedder.model_id:
            return
        vectors = row_vectors(
            row.embedding_dim, row.text_embedding, row.condition_embedding, row.request_embeddings
        )
        self._index.cache.put(row.user_id, COLLECTION, row.id, vectors)

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
        embeddings = self._embed(text, applies_when, None, pinned)
        with self._index.write_lock:
            row = self._instructions.create(
                scope,
                text=text,
                applies_when=applies_when,
                always_on=always_on,
                source=source,
                embeddings=embeddings,
            )
            self._mirror(row)
        return row

    def update_instruction(
        self, scope: UserScope, instruction_id: uuid.UUID, changes: InstructionChanges
    ) -> Instruction:
        self._index.require_ready()
        embeddings: InstructionEmbeddings | None = None
        if changes.rekeys:
            current = self._instructions.get(scope, instruction_id)
            text = changes.text if changes.text is not None else current.text
            applies = current.applies_when if changes.applies_when is None else changes.applies_when
            embeddings = self._embed(text, applies or None, current_applicability(current), changes)
        with self._index.write_lock:
            old, new = self._instructions.update(scope, instruction_id, changes, embeddings)
            self._index.cache.remove(old.user_id, COLLECTION, old.id)
            self._mirror(new)
        return new

    def delete_instruction(self, scope: UserScope, instruction_id: uuid.UUID) -> None:
        self._index.require_ready()
        with self._index.write_lock:
            row = self._instructions.delete(scope, instruction_id)
            self._index.cache.remove(row.user_id, COLLECTION, row.id)

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
        """Rows (by cascade), cache entries, and the on-disk snapshot all lose the user
        before this returns: the snapshot is rewritten without them."""
        self._index.require_ready()
        with self._index.write_lock:
            user_id = self._users.delete(scope, external_id)
            self._index.cache.drop_user(user_id)
            for forget in self._forget_user:
                forget(user_id)
            self._index.snapshot(force=True)
