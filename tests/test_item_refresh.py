"""A write to one item of a large profile reaches the other replica's cache item by item
(store/item_refresh.py): the next turn, and the change-log follower, read the changed
rows back, not the whole user. Asserted by the rows each replica reads from SQL, never
by timing. Two apps on one database (SQLite and PostgreSQL)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session

from service.ports import Ports
from store.changes import record_user_change
from store.instructions import COLLECTION, InstructionEmbeddings, first_version
from store.models import InstructionSource
from store.scope import UserScope
from tests.conftest import Api

USER = "big"
ITEMS = 600


def ports_of(api: Api) -> Ports:
    ports: Ports = api.client.app.state.ports  # type: ignore[attr-defined]
    return ports


def imported_pair(
    start_app: Callable[..., Api],
    database_url: str | None,
    tmp_path: Path,
    user: str,
    items: Callable[[Ports], Iterable[tuple[str, InstructionEmbeddings]]],
) -> tuple[Api, Api, dict[str, str], UserScope]:
    """Replicas A and B on one database and a user whose instructions (text, keys) are
    written straight into SQL, as a bulk import would, with one change naming none."""
    url = database_url or f"sqlite:///{tmp_path / 'shared.db'}"
    a = start_app(data_dir=tmp_path / "a", database_url=url, snapshot_interval_s=3600)
    b = start_app(data_dir=tmp_path / "b", database_url=url, snapshot_interval_s=3600)
    headers = a.tenant()
    a.user(headers, user)
    ports = ports_of(a)
    key = headers["Authorization"].removeprefix("Bearer ")
    scope = ports.users.resolve(ports.keys.authenticate(key), user)
    with Session(ports.engine) as session:
        for text, keys in items(ports):
            session.add(first_version(scope, text, None, False, InstructionSource.user, keys))
        record_user_change(session, scope, "profile", uuid.uuid4(), "imported")
        session.commit()
    return a, b, headers, scope


@pytest.fixture
def pair(start_app: Callable[..., Api], database_url: str | None, tmp_path: Path) -> Any:
    """Replicas A and B on one database; a user of ITEMS instructions, written straight
    into SQL (as a bulk import would) and loaded by both."""

    def items(ports: Ports) -> Iterable[tuple[str, InstructionEmbeddings]]:
        keys = ports.writer.instruction_keys("I like short answers", "when I ask about code")
        return ((f"Rule {i}: keep it short", keys) for i in range(ITEMS))

    a, b, headers, scope = imported_pair(start_app, database_url, tmp_path, USER, items)
    for api in (a, b):  # both replicas load the user whole, once
        api.context(headers, USER, "warm up")
        ports_of(api).index.follow()
    return a, b, headers, scope


def held(api: Api, scope: Any) -> int:
    return ports_of(api).index.cache.user_rows(scope.user_id, COLLECTION)


def test_one_item_written_through_a_replica_is_read_back_alone_by_the_other(
    pair: Any,
) -> None:
    a, b, headers, scope = pair
    assert held(b, scope) == ITEMS
    index_b = ports_of(b).index
    index_b.rows_read = 0
    created = a.instruction(
        headers, USER, text="I am allergic to peanuts", applies_when="when I ask about food"
    )
    changed = a.client.patch(
        f"/v1/users/{USER}/instructions/{created['id']}",
        json={"text": "I am allergic to peanuts and cashews"},
        headers=headers,
    )
    assert changed.status_code == 200, changed.text
    body = b.context(headers, USER, "I am allergic to peanuts and cashews", threshold=0.0)
    texts = [item["text"] for item in body["instructions"]]
    assert "I am allergic to peanuts and cashews" in texts
    assert "I am allergic to peanuts" not in texts
    index_b.follow()  # the follower sees the same two changes: item by item again
    # One item, two versions: each refresh reads its active row, never the user's 600
    # (the background follower and the turn may both apply a change: a few reads).
    assert 1 <= index_b.rows_read <= 6
    assert held(b, scope) == ITEMS + 1  # the old version left B's cache
    assert index_b.users_unlike_sql() == set()
    deleted = a.client.delete(f"/v1/users/{USER}/instructions/{created['id']}", headers=headers)
    assert deleted.status_code in (200, 204), deleted.text
    index_b.follow()
    assert held(b, scope) == ITEMS
    assert index_b.users_unlike_sql() == set()
    assert index_b.rows_read <= 6  # a deleted item reads no vector at all


def test_a_change_that_does_not_name_its_rows_reloads_the_whole_user(pair: Any) -> None:
    """A change the sources cannot apply item by item (here a user-level one) still
    brings the replica to SQL's truth, by the whole-user reload."""
    a, b, headers, scope = pair
    index_b = ports_of(b).index
    index_b.rows_read = 0
    with Session(ports_of(a).engine) as session:
        record_user_change(session, scope, "profile", uuid.uuid4(), "restored")
        session.commit()
    b.context(headers, USER, "anything")
    # The turn or the background follower (or both, racing) reloaded the user whole.
    assert index_b.rows_read in (ITEMS, 2 * ITEMS)
    assert index_b.users_unlike_sql() == set()
