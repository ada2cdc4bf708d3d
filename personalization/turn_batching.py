"""Turn records written in batches by one thread, off the request path.

Each /context or chat turn leaves a record of the items it used. Written one by one,
every turn paid its own transaction (an insert, the user's prune and a commit: on
SQLite an fsync, serialised with every other writer), about a fifth of a turn's
server time under load. Here a turn only appends its record to a queue; one worker
writes everything that arrives within `max_wait_s` (50 ms) in one transaction. A
record was already written after the answer went out, so nothing a client sees
changes; and a read of the user's turns on this replica first `flush`es, waiting for
the records queued before it.

The queue is bounded: past `max_pending` records a new one is dropped and counted (a
record is provenance, never the turn's result, and memory must not grow with an
overloaded database). A batch that fails is retried user by user, so one user deleted
meanwhile loses only their own records."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from store.clock import utcnow
from store.scope import UserScope
from store.turns import PendingTurn, TurnRepository

log = logging.getLogger("tailor")


class TurnLogWriter:
    """Has the `record` of `TurnRepository`, so `TurnRecorder` writes through it."""

    def __init__(
        self,
        turns: TurnRepository,
        *,
        max_batch: int = 256,
        max_pending: int = 10_000,
        max_wait_s: float = 0.05,
        start: bool = True,
    ) -> None:
        """`start=False` leaves the worker stopped until `start()` (tests fill a batch)."""
        self._turns = turns
        self._max_batch = max_batch
        self._max_pending = max_pending
        self._max_wait_s = max_wait_s
        self._idle = False  # the worker waits for a first record (else it lingers)
        self._flushing = 0  # callers of `flush` waiting: no lingering for them
        self._queue: deque[tuple[PendingTurn, int]] = deque()
        self._wakeup = threading.Condition()
        self._queued = 0  # records ever queued
        self._done = 0  # records ever taken and finished (written or failed)
        self._closed = False
        self.dropped = 0
        self._worker = threading.Thread(target=self._run, name="tailor-turn-log", daemon=True)
        if start:
            self._worker.start()

    def start(self) -> None:
        self._worker.start()

    def record(
        self,
        scope: UserScope,
        *,
        endpoint: str,
        items: Sequence[dict[str, Any]],
        message: str | None,
        keep: int,
    ) -> None:
        if keep <= 0:
            return
        turn = PendingTurn(scope, endpoint, list(items), message, utcnow())
        with self._wakeup:
            if self._closed or len(self._queue) >= self._max_pending:
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 1000 == 0:
                    log.warning("turn records dropped (queue full or closed): %d", self.dropped)
                return
            self._queue.append((turn, keep))
            self._queued += 1
            # A lingering worker wakes on its own; waking it per record would cost
            # every turn a thread switch.
            if self._idle or len(self._queue) >= self._max_batch:
                self._wakeup.notify_all()

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every record queued before this call is written (or has failed);
        False if that took longer than `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        with self._wakeup:
            target = self._queued
            self._flushing += 1
            self._wakeup.notify_all()
            try:
                while self._done < target:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or not self._worker.is_alive():
                        return False
                    self._wakeup.wait(remaining)
            finally:
                self._flushing -= 1
        return True

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is queued, then stop; later records are dropped."""
        with self._wakeup:
            self._closed = True
            self._wakeup.notify_all()
        self._worker.join(timeout_s)

    def _run(self) -> None:
        while True:
            with self._wakeup:
                self._idle = True
                while not self._queue and not self._closed:
                    self._wakeup.wait()
                self._idle = False
                if not self._queue:
                    return
                # Linger for company: a few records per transaction instead of one.
                deadline = time.monotonic() + self._max_wait_s
                while len(self._queue) < self._max_batch and not (self._closed or self._flushing):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._wakeup.wait(remaining)
                take = min(self._max_batch, len(self._queue))
                batch = [self._queue.popleft() for _ in range(take)]
            try:
                self._write(batch)
            finally:
                with self._wakeup:
                    self._done += len(batch)
                    self._wakeup.notify_all()

    def _write(self, batch: list[tuple[PendingTurn, int]]) -> None:
        by_keep: dict[int, list[PendingTurn]] = {}
        for turn, keep in batch:
            by_keep.setdefault(keep, []).append(turn)
        for keep, turns in by_keep.items():
            try:
                self._turns.record_many(turns, keep=keep)
            except SQLAlchemyError:
                self._write_per_user(turns, keep)

    def _write_per_user(self, turns: list[PendingTurn], keep: int) -> None:
        by_user: dict[object, list[PendingTurn]] = {}
        for turn in turns:
            by_user.setdefault(turn.scope.user_id, []).append(turn)
        for user_turns in by_user.values():
            try:
                self._turns.record_many(user_turns, keep=keep)
            except SQLAlchemyError as exc:  # e.g. the user was deleted meanwhile
                log.warning("turn record not written: %s", type(exc).__name__)
