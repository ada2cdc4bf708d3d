"""The background worker that infers preferences from edits (one model call each).

Jobs are rows of the `edit` table, so the queue survives restarts. A failed call is
retried with exponential backoff up to `max_attempts`, then marked failed with its
error. After a preference is stored the edit's context joins the user's vector index,
under the writer lock, like any other write."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from personalization.backends import ModelBackend
from personalization.cipher import INFER_SETTINGS, clean_phrase, infer_messages
from store.clock import utcnow
from store.edits import COLLECTION, EditRepository
from store.errors import NotFound, TailorError
from store.index_manager import IndexManager
from store.models import Edit
from store.vector_index import decode_vector

log = logging.getLogger("tailor.edits")


class EditWorker:
    def __init__(
        self,
        edits: EditRepository,
        backend: ModelBackend,
        index: IndexManager,
        *,
        max_attempts: int = 5,
        backoff_s: float = 2.0,
        poll_s: float = 5.0,
    ) -> None:
        self._edits = edits
        self._backend = backend
        self._index = index
        self._max_attempts = max_attempts
        self._backoff_s = backoff_s
        self._poll_s = poll_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.processed = 0

    def start(self) -> None:
        requeued = self._edits.requeue_running()
        if requeued:
            log.info("requeued %d edits claimed before the last shutdown", requeued)
        self._thread = threading.Thread(target=self._run, name="tailor-edit-worker", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._index.ready:
                self._stop.wait(0.1)
                continue
            try:
                worked = self.run_once()
            except Exception:  # keep the worker alive; the job stays queued
                log.exception("edit worker iteration failed")
                worked = False
            if not worked:
                self._wake.wait(self._idle_wait())
                self._wake.clear()

    def _idle_wait(self) -> float:
        """Sleep until the next retry is due, or `poll_s` at most (new edits wake us)."""
        due = self._edits.next_due_at()
        if due is None:
            return self._poll_s
        return min(self._poll_s, max(0.0, (due - utcnow()).total_seconds()))

    def run_once(self) -> bool:
        """Process one due job; False when there was none."""
        edit = self._edits.claim_next()
        if edit is None:
            return False
        self._process(edit)
        self.processed += 1
        return True

    def _process(self, edit: Edit) -> None:
        try:
            done = self._backend.complete(infer_messages(edit.draft, edit.edited), INFER_SETTINGS)
            phrase = clean_phrase(done.text)
            if phrase is None:
                raise ValueError("the model returned no phrase")
        except (TailorError, ValueError) as exc:
            message = getattr(exc, "message", str(exc))
            if edit.attempts >= self._max_attempts:
                log.error("giving up on edit %s after %d attempts", edit.id, edit.attempts)
                self._edits.retry_later(edit, message, None)
            else:
                delay = timedelta(seconds=self._backoff_s * 2 ** (edit.attempts - 1))
                self._edits.retry_later(edit, message, utcnow() + delay)
            return
        with self._index.write_lock:
            try:
                self._edits.finish(edit, phrase)
            except NotFound:
                return  # the user was deleted while the model ran
            vector = decode_vector(edit.context_embedding, edit.embedding_dim)
            self._index.cache.put(edit.user_id, COLLECTION, edit.id, [(0, vector)])
