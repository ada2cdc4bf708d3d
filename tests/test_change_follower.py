"""The change-log follower never skips a change: on PostgreSQL a transaction takes its
sequence number at insert and shows at commit, so seq 11 can be visible before seq 10."""

from __future__ import annotations

import uuid
from typing import Any

from store.change_follower import ChangeFollower
from store.changes import Change


class FakeLog:
    """Only the committed rows are visible, whatever their seqs."""

    def __init__(self) -> None:
        self.rows: list[Change] = []

    def commit(self, seq: int, user: uuid.UUID, entity: str = "instruction") -> None:
        action = "deleted" if entity == "user" else "created"
        self.rows.append(Change(seq, user, entity, action))

    def changes_in(self, seqs: list[int]) -> list[Change]:
        return sorted((r for r in self.rows if r.seq in seqs), key=lambda r: r.seq)

    def changes_after(self, seq: int, *, upto: int | None = None, limit: int) -> list[Change]:
        found = sorted(
            (r for r in self.rows if r.seq > seq and (upto is None or r.seq <= upto)),
            key=lambda r: r.seq,
        )
        return found[:limit]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _follower(log: FakeLog, clock: Clock) -> ChangeFollower:
    reader: Any = log
    return ChangeFollower(reader, gap_timeout_s=30, clock=clock)


def test_a_change_committed_after_a_later_one_is_still_seen() -> None:
    log, clock = FakeLog(), Clock()
    a, b = uuid.uuid4(), uuid.uuid4()
    log.commit(1, a)
    follower = _follower(log, clock)
    follower.start_at(1, lookback=10)
    log.commit(3, b)  # seq 2 (user a) took its number first but commits later
    assert follower.poll().changed == {b}
    assert follower.watermark == 1  # held at the gap
    clock.now += 5
    log.commit(2, a)
    assert follower.poll().changed == {a}
    assert follower.watermark == 3
    assert follower.poll().changed == set()  # nothing is reported twice


def test_a_gap_that_never_fills_is_passed_after_the_timeout() -> None:
    log, clock = FakeLog(), Clock()
    user = uuid.uuid4()
    follower = _follower(log, clock)
    follower.start_at(0, lookback=10)
    log.commit(5, user)  # 1..4 rolled back (or belonged to a deleted user)
    assert follower.poll().changed == {user}
    clock.now += 29
    follower.poll()
    assert follower.watermark == 0
    clock.now += 2
    assert follower.poll().changed == set()
    assert follower.watermark == 5


def test_in_flight_changes_below_the_load_point_are_watched() -> None:
    log, clock = FakeLog(), Clock()
    a, b = uuid.uuid4(), uuid.uuid4()
    log.commit(1, a)
    log.commit(3, a)  # the cache was loaded when max(seq) was 3 and 2 was in flight
    follower = _follower(log, clock)
    follower.start_at(3, lookback=10)
    assert follower.poll().changed == set()
    log.commit(2, b)
    assert follower.poll().changed == {b}
    assert follower.watermark == 3


def test_a_long_open_gap_does_not_hide_newer_changes(monkeypatch: Any) -> None:
    import store.change_follower

    monkeypatch.setattr(store.change_follower, "BATCH", 2)
    log, clock = FakeLog(), Clock()
    users = [uuid.uuid4() for _ in range(6)]
    follower = _follower(log, clock)
    follower.start_at(0, lookback=10)
    for seq, user in enumerate(users[1:], start=2):  # seq 1 stays in flight
        log.commit(seq, user)
    seen: set[uuid.UUID] = set()
    for _ in range(3):
        seen |= follower.poll().changed
    assert seen == set(users[1:])
    assert follower.watermark == 0 and follower.pending_gaps == 1
    log.commit(1, users[0])
    assert follower.poll().changed == {users[0]}
    assert follower.watermark == 6


def test_a_deleted_user_is_reported_as_deleted() -> None:
    log, clock = FakeLog(), Clock()
    gone, kept = uuid.uuid4(), uuid.uuid4()
    follower = _follower(log, clock)
    follower.start_at(0, lookback=10)
    log.commit(1, kept)
    log.commit(2, gone, entity="user")
    found = follower.poll()
    assert found.deleted == {gone}
    assert found.changed == {gone, kept}


def test_out_of_order_commits_on_a_real_postgresql(postgres_server: Any) -> None:
    from sqlmodel import Session

    from store.changes import ChangeLogReader
    from store.db import create_db_engine, migrate
    from store.models import ChangeLog

    engine = create_db_engine(postgres_server.new_database())
    migrate(engine)
    early, late = uuid.uuid4(), uuid.uuid4()
    try:
        follower = ChangeFollower(ChangeLogReader(engine), gap_timeout_s=30)
        follower.start_at(0, lookback=10)

        def row(user: uuid.UUID) -> ChangeLog:
            return ChangeLog(
                tenant_id=uuid.uuid4(), user_id=user, entity="edit", entity_id=user, action="x"
            )

        with Session(engine) as slow:
            slow.add(row(early))
            slow.flush()  # takes seq 1, not yet visible
            with Session(engine) as fast:
                fast.add(row(late))
                fast.commit()  # seq 2, visible
            assert follower.poll().changed == {late}
            slow.commit()
        assert follower.poll().changed == {early}
        assert follower.watermark == 2
    finally:
        engine.dispose()
