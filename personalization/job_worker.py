"""The loop every background job worker runs (edit inference, conversation capture).

Jobs are table rows (store/job_queue.py), so the queue survives restarts. A job is
claimed under a lease that a keeper thread renews while the work goes on; if this
process dies or hangs, the lease expires and any replica takes the job over. A worker
that lost its lease cannot finish the job (the store checks the owner). A failed
attempt is retried with exponential backoff up to `max_attempts`, then marked failed
with its error. Subclasses say how one job is processed."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Generic, Protocol, TypeVar

from store.clock import utcnow
from store.db import lock_contention


def worker_id() -> str:
    """Names the lease holder in the database: which host and process, plus a random
    part so a restarted process with a reused pid is another owner."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class LeasedJob(Protocol):
    @property
    def id(self) -> uuid.UUID: ...

    @property
    def attempts(self) -> int: ...


J = TypeVar("J", bound=LeasedJob)


class JobQueue(Protocol[J]):
    def claim_next(self, owner: str, lease: timedelta, now: datetime | None = None) -> J | None: ...

    def renew(self, job: J, owner: str, lease: timedelta, now: datetime | None = None) -> bool: ...

    def retry_later(self, job: J, error: str, at: datetime | None, owner: str) -> None: ...

    def release(self, owner: str) -> int: ...

    def next_due_at(self) -> datetime | None: ...


class Ready(Protocol):
    @property
    def ready(self) -> bool: ...


@dataclass(frozen=True)
class JobTerms:
    """How a leased worker retries and holds its jobs: the edit and capture workers take
    the same settings (TAILOR_EDIT_MAX_ATTEMPTS, _RETRY_BACKOFF_S, _LEASE_S)."""

    max_attempts: int = 5
    backoff_s: float = 2.0
    poll_s: float = 5.0
    lease_s: float = 60.0


class LeasedWorker(ABC, Generic[J]):
    """Polls `queue` on a daemon thread once `index` is ready; `noun` names the jobs in
    logs and thread names ("edit", "capture")."""

    def __init__(
        self,
        queue: JobQueue[J],
        index: Ready,
        *,
        noun: str,
        terms: JobTerms,
    ) -> None:
        self._queue = queue
        self._ready = index
        self._noun = noun
        self._log = logging.getLogger(f"tailor.{noun}s")
        self._max_attempts = terms.max_attempts
        self._backoff_s = terms.backoff_s
        self._poll_s = terms.poll_s
        self._lease = timedelta(seconds=terms.lease_s)
        self.owner = worker_id()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.processed = 0
        self.lock_waits = 0  # iterations that gave up waiting for a database lock

    @abstractmethod
    def _process(self, job: J) -> None:
        """Do the job and finish it under the lease, or call `_failed`."""

    def start(self) -> None:
        """Starts polling. Jobs other replicas hold are left alone: an expired lease is
        claimed like any due job, a live one is not this process's to take."""
        self._thread = threading.Thread(
            target=self._run, name=f"tailor-{self._noun}-worker", daemon=True
        )
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        try:
            released = self._queue.release(self.owner)
        except Exception:  # the database is gone: the leases expire on their own
            self._log.exception("could not hand unfinished %ss back", self._noun)
            return
        if released:
            self._log.info("handed %d unfinished %ss back to the queue", released, self._noun)

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._ready.ready:
                self._stop.wait(0.1)
                continue
            try:
                worked = self.run_once()
            except Exception as exc:  # keep the worker alive; a held job's lease expires
                self._iteration_failed(exc)
                worked = False
            if not worked:
                self._wake.wait(self._idle_wait())
                self._wake.clear()

    def _iteration_failed(self, exc: Exception) -> None:
        if not self._busy(exc, "claiming a job"):
            self._log.error("%s worker iteration failed", self._noun, exc_info=exc)

    def _busy(self, exc: BaseException, doing: str) -> bool:
        """True, with one line at WARNING and a count in `lock_waits`, when `exc` is a
        lock wait that gave up (store/db.py `lock_contention`): another transaction
        holds the database (a bulk write on SQLite, a lock timeout or a lost
        serialization on PostgreSQL). That is expected and passes, so it pages no one;
        the caller backs off as after any failure. Anything else is for the caller to
        log at ERROR with its traceback."""
        contention = lock_contention(exc)
        if contention is None:
            return False
        self.lock_waits += 1
        self._log.warning(
            "%s worker: database busy while %s (%s: another transaction holds the lock); "
            "will try again",
            self._noun,
            doing,
            contention,
        )
        return True

    def _idle_wait(self) -> float:
        """Sleep until the next retry or lease expiry is due, `poll_s` at most (new jobs
        wake us). If the database cannot say, `poll_s`: the loop must outlive it."""
        try:
            due = self._queue.next_due_at()
        except Exception:  # a lasting failure shows in the next claim's log line
            return self._poll_s
        if due is None:
            return self._poll_s
        return min(self._poll_s, max(0.0, (due - utcnow()).total_seconds()))

    def run_once(self) -> bool:
        """Process one due job; False when there was none."""
        job = self._queue.claim_next(self.owner, self._lease)
        if job is None:
            return False
        with self._lease_kept(job):
            self._process(job)
        self.processed += 1
        return True

    @contextlib.contextmanager
    def _lease_kept(self, job: J) -> Iterator[None]:
        """Renew the lease every third of its length while the body runs."""
        done = threading.Event()
        period = self._lease.total_seconds() / 3

        def keep() -> None:
            while not done.wait(period):
                try:
                    if not self._queue.renew(job, self.owner, self._lease):
                        self._log.warning(
                            "lost the lease on %s %s; another worker has it", self._noun, job.id
                        )
                        return
                except Exception as exc:  # a database hiccup: try again next period
                    if not self._busy(exc, "renewing a lease"):
                        self._log.exception(
                            "renewing the lease on %s %s failed", self._noun, job.id
                        )

        keeper = threading.Thread(target=keep, name=f"tailor-{self._noun}-lease", daemon=True)
        keeper.start()
        try:
            yield
        finally:
            done.set()
            keeper.join(timeout=10)

    def _failed(self, job: J, message: str) -> None:
        if job.attempts >= self._max_attempts:
            noun, attempts = self._noun, job.attempts
            self._log.error("giving up on %s %s after %d attempts", noun, job.id, attempts)
            self._queue.retry_later(job, message, None, self.owner)
        else:
            delay = timedelta(seconds=self._backoff_s * 2 ** (job.attempts - 1))
            self._queue.retry_later(job, message, utcnow() + delay, self.owner)
