"""The background worker that infers preferences from edits (one model call each).

Jobs are rows of the `edit` table, so the queue survives restarts. A job is claimed
under a lease that a keeper thread renews while the model works; if this process dies
or hangs, the lease expires and any replica takes the job over. A worker that lost its
lease cannot finish the job (the store checks the owner), so an edit never gets two
preferences. Every failure of the model call, whether an error or a reply of the
wrong shape, is a failed attempt: retried with exponential backoff up to
`max_attempts`, then marked failed with its error. After a preference is stored the
edit's context joins the user's vector index, under the writer lock, like any other
write."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta

from personalization.backends import ModelBackend
from personalization.cipher import INFER_SETTINGS, clean_phrase, infer_messages
from store.clock import utcnow
from store.edits import COLLECTION, EditRepository
from store.errors import TailorError
from store.index_manager import IndexManager
from store.models import Edit
from store.vector_index import decode_vector

log = logging.getLogger("tailor.edits")


def worker_id() -> str:
    """Names the lease holder in the database: which host and process, plus a random
    part so a restarted process with a reused pid is another owner."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


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
        lease_s: float = 60.0,
    ) -> None:
        self._edits = edits
        self._backend = backend
        self._index = index
        self._max_attempts = max_attempts
        self._backoff_s = backoff_s
        self._poll_s = poll_s
        self._lease = timedelta(seconds=lease_s)
        self.owner = worker_id()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.processed = 0

    def start(self) -> None:
        """Starts polling. Jobs other replicas hold are left alone: an expired lease is
        claimed like any due job, a live one is not this process's to take."""
        self._thread = threading.Thread(target=self._run, name="tailor-edit-worker", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        try:
            released = self._edits.release(self.owner)
        except Exception:  # the database is gone: the leases expire on their own
            log.exception("could not hand unfinished edits back")
            return
        if released:
            log.info("handed %d unfinished edits back to the queue", released)

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._index.ready:
                self._stop.wait(0.1)
                continue
            try:
                worked = self.run_once()
            except Exception:  # keep the worker alive; the job's lease expires and it is retried
                log.exception("edit worker iteration failed")
                worked = False
            if not worked:
                self._wake.wait(self._idle_wait())
                self._wake.clear()

    def _idle_wait(self) -> float:
        """Sleep until the next retry or lease expiry is due, `poll_s` at most (new edits
        wake us)."""
        due = self._edits.next_due_at()
        if due is None:
            return self._poll_s
        return min(self._poll_s, max(0.0, (due - utcnow()).total_seconds()))

    def run_once(self) -> bool:
        """Process one due job; False when there was none."""
        edit = self._edits.claim_next(self.owner, self._lease)
        if edit is None:
            return False
        with self._lease_kept(edit):
            self._process(edit)
        self.processed += 1
        return True

    @contextlib.contextmanager
    def _lease_kept(self, edit: Edit) -> Iterator[None]:
        """Renew the lease every third of its length while the body runs."""
        done = threading.Event()
        period = self._lease.total_seconds() / 3

        def keep() -> None:
            while not done.wait(period):
                try:
                    if not self._edits.renew(edit, self.owner, self._lease):
                        log.warning("lost the lease on edit %s; another worker has it", edit.id)
                        return
                except Exception:  # a database hiccup: try again next period
                    log.exception("renewing the lease on edit %s failed", edit.id)

        keeper = threading.Thread(target=keep, name="tailor-edit-lease", daemon=True)
        keeper.start()
        try:
            yield
        finally:
            done.set()
            keeper.join(timeout=10)

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
                message = f"unexpected {type(exc).__name__}: {exc}"
            self._failed(edit, message)
            return
        with self._index.write_lock:
            if self._edits.finish(edit, phrase, self.owner) is None:
                return  # the lease was lost, or the user was deleted while the model ran
            vector = decode_vector(edit.context_embedding, edit.embedding_dim)
            self._index.cache.put(edit.user_id, COLLECTION, edit.id, [(0, vector)])

    def _failed(self, edit: Edit, message: str) -> None:
        if edit.attempts >= self._max_attempts:
            log.error("giving up on edit %s after %d attempts", edit.id, edit.attempts)
            self._edits.retry_later(edit, message, None, self.owner)
        else:
            delay = timedelta(seconds=self._backoff_s * 2 ** (edit.attempts - 1))
            self._edits.retry_later(edit, message, utcnow() + delay, self.owner)
