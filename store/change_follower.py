"""Follows the change log so a replica learns which users other replicas changed.

The log's sequence orders changes but, on PostgreSQL, not commits: a transaction takes
its number when it inserts and becomes visible when it commits, so seq 11 can be seen
before seq 10. Reading "everything above the highest seq seen" would then skip 10 for
good. The follower keeps instead a watermark below which every seq has been handled,
remembers the seqs above it that it has handled, and holds the watermark at a missing
seq until it shows up or `gap_timeout_s` has passed since a higher seq was first seen
(a rolled-back transaction, or the rows of a deleted user, leave gaps that never fill).
SQLite has one writer at a time, so there seq order is commit order and gaps only come
from deleted rows."""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from store.changes import Change, ChangeLogReader

BATCH = 5000  # new changes read per poll; a long backlog is read over several polls
GAPS_PER_POLL = 1000  # awaited seqs asked for per poll


@dataclass(frozen=True, slots=True)
class FollowedChanges:
    changed: set[uuid.UUID] = field(default_factory=set)  # refresh these from SQL
    deleted: set[uuid.UUID] = field(default_factory=set)  # forget these everywhere
    changes: list[Change] = field(default_factory=list)  # what changed, item by item


class ChangeFollower:
    def __init__(
        self,
        reader: ChangeLogReader,
        *,
        gap_timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._reader = reader
        self._gap_timeout_s = gap_timeout_s
        self._clock = clock
        self.watermark = 0
        self._handled: set[int] = set()  # seqs above the watermark already handled
        # (highest seq handled, when it was first seen): a missing seq below such a
        # mark has been missing at least since then.
        self._marks: deque[tuple[int, float]] = deque()

    def start_at(self, seq: int, *, lookback: int) -> None:
        """The cache reflects every change up to `seq` that had committed when it was
        read. The `lookback` seqs below it may still be in flight: those present now
        count as handled, the missing ones are watched like any other gap."""
        self.watermark = max(0, seq - lookback)
        present = self._reader.changes_after(self.watermark, upto=seq, limit=lookback + 1)
        self._handled = {change.seq for change in present}
        self._marks.clear()
        if seq > self.watermark:
            self._marks.append((seq, self._clock()))
        self._advance()

    @property
    def _top(self) -> int:
        return self._marks[-1][0] if self._marks else self.watermark

    def poll(self) -> FollowedChanges:
        """New changes (above the highest handled) and awaited ones (the gaps below it)
        are asked for separately, so a long-open gap never hides newer changes."""
        top = self._top
        awaited = [s for s in range(self.watermark + 1, top) if s not in self._handled]
        fresh = self._reader.changes_in(awaited[:GAPS_PER_POLL])
        fresh += self._reader.changes_after(top, limit=BATCH)
        fresh = [change for change in fresh if change.seq not in self._handled]
        if fresh:
            self._handled.update(change.seq for change in fresh)
            top = max(change.seq for change in fresh)
            if not self._marks or top > self._marks[-1][0]:
                self._marks.append((top, self._clock()))
        self._advance()
        return FollowedChanges(
            changed={c.user_id for c in fresh if c.user_id is not None},
            deleted={c.user_id for c in fresh if c.user_id is not None and c.deletes_user},
            changes=fresh,
        )

    def _advance(self) -> None:
        now = self._clock()
        while self._marks:
            nxt = self.watermark + 1
            if nxt in self._handled:
                self._handled.discard(nxt)
            else:
                seen_above_since = next((t for top, t in self._marks if top >= nxt), None)
                if seen_above_since is None or now - seen_above_since < self._gap_timeout_s:
                    return
            self.watermark = nxt
            while self._marks and self._marks[0][0] <= self.watermark:
                self._marks.popleft()

    @property
    def pending_gaps(self) -> int:
        """Missing seqs the watermark is waiting on (for logs and tests)."""
        return self._top - self.watermark - len(self._handled)
