"""The background worker that infers preferences from edits (one model call each).

The loop, the lease and the retries are personalization/job_worker.py's. Every failure
of the model call, whether an error or a reply of the wrong shape, is a failed attempt.
A worker that lost its lease cannot finish the job (the store checks the owner), so an
edit never gets two preferences. After a preference is stored the edit's context joins
the user's vector index, under the writer lock, like any other write."""

from __future__ import annotations

import logging

from personalization.backends import ModelBackend
from personalization.cipher import INFER_SETTINGS, clean_phrase, infer_messages
from personalization.job_worker import JobTerms, LeasedWorker
from store.db import failure_text
from store.edits import COLLECTION, EditRepository
from store.errors import TailorError
from store.index_manager import IndexManager
from store.models import Edit
from store.vector_index import decode_vector

log = logging.getLogger("tailor.edits")


class EditWorker(LeasedWorker[Edit]):
    def __init__(
        self,
        edits: EditRepository,
        backend: ModelBackend,
        index: IndexManager,
        *,
        terms: JobTerms = JobTerms(),
    ) -> None:
        super().__init__(
            edits,
            index,
            noun="edit",
            terms=terms,
        )
        self._edits = edits
        self._backend = backend
        self._index = index

    def _process(self, edit: Edit) -> None:
        try:
            done = self._backend.complete(infer_messages(edit.draft, edit.edited), INFER_SETTINGS)
            phrase = clean_phrase(done.text)
            if phrase is None:
                raise ValueError("the model returned no phrase")
        except Exception as exc:  # whatever the model did, it is one failed attempt
            if isinstance(exc, TailorError | ValueError):
                message = getattr(exc, "message", str(exc))
            else:
                log.exception("unexpected failure inferring edit %s", edit.id)
                message = failure_text(exc)
            self._failed(edit, message)
            return
        with self._index.write_lock:
            if self._edits.finish(edit, phrase, self.owner) is None:
                return  # the lease was lost, or the user was deleted while the model ran
            vector = decode_vector(edit.context_embedding, edit.embedding_dim)
            self._index.cache.put(edit.user_id, COLLECTION, edit.id, [(0, vector)])
