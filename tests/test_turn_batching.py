"""Turn records written in batches (personalization/turn_batching.py), on SQLite and
PostgreSQL: one batch prunes each of its users to the kept number, newest kept; a user
deleted before their batch was written loses only their own records; a read of the
turns over HTTP sees every turn this replica answered before it."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import Session, select

from personalization.turn_batching import TurnLogWriter
from service.ports import Ports
from store.clock import utcnow
from store.models import TurnRecord
from store.scope import TenantScope, UserScope
from store.turns import PendingTurn, TurnRepository
from tests.conftest import Api


def _ports(api: Api) -> Ports:
    ports: Ports = api.client.app.state.ports  # type: ignore[attr-defined]
    return ports


def _rows(api: Api) -> list[TurnRecord]:
    with Session(_ports(api).engine) as session:
        return list(session.exec(select(TurnRecord)).all())


def _scope(api: Api, headers: dict[str, str], user: str) -> UserScope:
    ports = _ports(api)
    key = ports.keys.authenticate(headers["Authorization"].removeprefix("Bearer "))
    return ports.users.resolve(TenantScope(tenant_id=key.tenant_id, key_id=key.key_id), user)


def test_one_batch_keeps_each_users_newest_records(api: Api) -> None:
    h = api.tenant()
    for user in ("alice", "bob"):
        api.user(h, user)
    alice, bob = _scope(api, h, "alice"), _scope(api, h, "bob")
    start = utcnow()
    turns = [
        PendingTurn(scope, "context", [{"n": n}], None, start + timedelta(milliseconds=n))
        for n in range(6)
        for scope in (alice, bob)
    ]
    TurnRepository(_ports(api).engine).record_many(turns, keep=3)
    kept = {(r.user_id, r.items[0]["n"]) for r in _rows(api)}
    assert kept == {(s.user_id, n) for s in (alice, bob) for n in (3, 4, 5)}


def test_a_deleted_users_records_fail_alone(api: Api) -> None:
    h = api.tenant()
    for user in ("alice", "bob"):
        api.user(h, user)
    alice, bob = _scope(api, h, "alice"), _scope(api, h, "bob")
    assert api.client.delete("/v1/users/bob", headers=h).status_code == 204
    writer = TurnLogWriter(TurnRepository(_ports(api).engine), start=False)
    for scope in (alice, bob, alice):
        writer.record(
            scope, endpoint="context", items=[{"who": scope.external_id}], message=None, keep=5
        )
    writer.start()  # all three in one batch; bob's rows break its first transaction
    assert writer.flush()
    writer.close()
    rows = _rows(api)
    assert [r.user_id for r in rows] == [alice.user_id, alice.user_id]


def test_turns_read_over_http_include_every_turn_answered_before(api: Api) -> None:
    h = api.tenant()
    api.user(h, "alice")
    api.instruction(h, "alice", text="I avoid gluten.", always_on=True)
    for n in range(12):
        api.context(h, "alice", f"question {n}")
    turns = api.client.get("/v1/users/alice/turns", headers=h).json()["items"]
    assert len(turns) == 12
    assert all(len(t["items"]) == 1 for t in turns)
    stamps = [t["at"] for t in turns]
    assert stamps == sorted(stamps, reverse=True)


def test_a_closed_writer_drops_and_counts(api: Api) -> None:
    h = api.tenant()
    api.user(h, "alice")
    writer = TurnLogWriter(TurnRepository(_ports(api).engine))
    writer.close()
    writer.record(_scope(api, h, "alice"), endpoint="context", items=[], message=None, keep=5)
    assert writer.dropped == 1
    assert _rows(api) == []
