"""Races between two replicas (two apps in this process on one database, SQLite or
PostgreSQL), made deterministic: the second write runs to completion exactly between
the first write's read and its write. Whatever the order, the database decides: the
writer whose read went stale gets 409 `concurrent_update`, an acknowledged delete is
never undone, the stored vectors are those of the stored text, and a preference is
promoted once. tests/test_replica_races.py races real `tailor serve` processes."""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import Engine
from sqlmodel import col

from personalization.text import condition_focus
from store.clock import utcnow
from store.db import alembic_config, create_db_engine, migrate
from store.models import Instruction, UTCDateTime
from store.vector_index import encode_vector
from tests.conftest import Api
from tests.fakes import HashingEmbedder

USER = "alice"
BASE = f"/v1/users/{USER}"


@pytest.fixture
def pair(start_app: Callable[..., Api], database_url: str | None, tmp_path: Path) -> Any:
    """Replicas A and B on one database, each with its own data folder and cache."""
    url = database_url or f"sqlite:///{tmp_path / 'shared.db'}"
    a = start_app(data_dir=tmp_path / "a", database_url=url)
    b = start_app(data_dir=tmp_path / "b", database_url=url)
    h = a.tenant()
    a.user(h, USER)
    return a, b, h


def engine_of(api: Api) -> Engine:
    engine: Engine = api.client.app.state.ports.engine  # type: ignore[attr-defined]
    return engine


@contextmanager
def between_read_and_write(
    api: Api, table: str, other: Callable[[], httpx.Response]
) -> Iterator[list[httpx.Response]]:
    """Run `other` to completion right after `api`'s first SELECT from `table`, so it
    lands between that replica's read and its write. Yields `other`'s response."""
    engine = engine_of(api)
    done: list[httpx.Response] = []
    fired = threading.Event()

    def after(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if fired.is_set() or not statement.lstrip().upper().startswith("SELECT"):
            return
        if not re.search(rf"\bFROM {table}\b", statement):
            return
        fired.set()
        worker = threading.Thread(target=lambda: done.append(other()))
        worker.start()
        worker.join(60)

    sa.event.listen(engine, "after_cursor_execute", after)
    try:
        yield done
    finally:
        sa.event.remove(engine, "after_cursor_execute", after)
    assert fired.is_set() and len(done) == 1, "the interleaved write did not run"


def current_rows(api: Api, instruction_id: str) -> list[Instruction]:
    with sa.orm.Session(engine_of(api)) as session:
        rows = session.scalars(
            sa.select(Instruction)
            .where(col(Instruction.instruction_id) == uuid.UUID(instruction_id))
            .where(col(Instruction.valid_to).is_(None))
        ).all()
        return list(rows)


def history(api: Api, h: dict[str, str], instruction_id: str) -> list[tuple[int, str]]:
    body = api.client.get(f"{BASE}/instructions/{instruction_id}/history", headers=h).json()
    return [(v["version"], v["status"]) for v in body["versions"]]


@pytest.mark.parametrize("delete_first_reads", [False, True])
def test_delete_racing_patch_is_never_undone(pair: Any, delete_first_reads: bool) -> None:
    a, b, h = pair
    iid = a.instruction(h, USER, text="Answer in French.")["id"]
    url = f"{BASE}/instructions/{iid}"

    def patch(api: Api) -> httpx.Response:
        return api.client.patch(url, json={"always_on": True}, headers=h)

    def delete(api: Api) -> httpx.Response:
        return api.client.delete(url, headers=h)

    if delete_first_reads:  # A's delete reads, B's patch commits, A's delete writes
        with between_read_and_write(a, "instruction", lambda: patch(b)) as inner:
            first = delete(a)
        deleted, patched = first, inner[0]
    else:  # A's patch reads, B's delete commits, A's patch writes
        with between_read_and_write(a, "instruction", lambda: delete(b)) as inner:
            first = patch(a)
        deleted, patched = inner[0], first

    statuses = sorted([deleted.status_code, patched.status_code])
    assert statuses in ([200, 409], [204, 409]), (deleted.text, patched.text)
    loser = deleted if deleted.status_code == 409 else patched
    assert loser.json()["error"]["code"] == "concurrent_update"
    current = a.client.get(url, headers=h)
    if deleted.status_code == 204:  # acknowledged: it must stay deleted
        assert current.status_code == 404
        assert history(a, h, iid) == [(1, "deleted")]
    else:
        assert current.status_code == 200
        assert current.json()["always_on"] is True
        assert history(a, h, iid) == [(1, "active"), (2, "active")]
    assert len(current_rows(a, iid)) == (0 if deleted.status_code == 204 else 1)


@pytest.mark.parametrize("first", ["text", "applies_when"])
def test_racing_patches_store_the_vectors_of_the_stored_text(pair: Any, first: str) -> None:
    """A's PATCH reads (and embeds from) version 1; B's PATCH of the other field lands
    before A writes. Before the fix A wrote version 3 with vectors of version 1's text
    or condition; now A gets 409 and version 2 stays, with its own vectors."""
    a, b, h = pair
    created = a.instruction(
        h, USER, text="Use metric units.", applies_when="when I ask about a recipe"
    )
    url = f"{BASE}/instructions/{created['id']}"
    bodies = {"text": {"text": "Use imperial units."}, "applies_when": {"applies_when": "cars"}}
    other = "applies_when" if first == "text" else "text"
    with between_read_and_write(
        a, "instruction", lambda: b.client.patch(url, json=bodies[other], headers=h)
    ) as inner:
        mine = a.client.patch(url, json=bodies[first], headers=h)
    assert inner[0].status_code == 200, inner[0].text
    assert mine.status_code == 409, mine.text
    assert mine.json()["error"]["code"] == "concurrent_update"

    (row,) = current_rows(a, created["id"])
    assert row.version == 2
    embedder = HashingEmbedder()
    assert row.text_embedding == encode_vector(embedder.embed([row.text])[0])
    assert row.applies_when is not None
    expected = embedder.embed([condition_focus(row.applies_when)])[0]
    assert row.condition_embedding == encode_vector(expected)


def accepted_preference(api: Api, h: dict[str, str], text: str) -> str:
    """A preference without a model: a trivial edit (draft == edited) that names the
    preference which conditioned the draft stores it as accepted, synchronously."""
    same = "Meeting moved to Thursday."
    edit = api.client.post(
        f"{BASE}/edits",
        json={
            "context": "tell the team",
            "draft": same,
            "edited": same,
            "applied_preference": text,
        },
        headers=h,
    )
    assert edit.status_code == 202, edit.text
    preference_id: str = edit.json()["preference_id"]
    assert preference_id
    return preference_id


def promoted_instructions(api: Api, h: dict[str, str]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = api.client.get(f"{BASE}/instructions", headers=h).json()["items"]
    return [i for i in items if i["source"] == "inferred"]


def test_promote_racing_promote_creates_one_instruction(pair: Any) -> None:
    a, b, h = pair
    pid = accepted_preference(a, h, "Keep team notes to one line")
    url = f"{BASE}/preferences/{pid}/promote"
    with between_read_and_write(
        a, "inferred_preference", lambda: b.client.post(url, json={}, headers=h)
    ) as inner:
        mine = a.client.post(url, json={"always_on": True}, headers=h)
    winner = inner[0]
    assert winner.status_code == 200, winner.text
    assert mine.status_code == 409, mine.text
    assert mine.json()["error"]["code"] == "concurrent_update"

    made = promoted_instructions(a, h)
    assert [i["id"] for i in made] == [winner.json()["instruction"]["id"]]
    preference = a.client.get(f"{BASE}/preferences/{pid}", headers=h).json()
    assert preference["status"] == "promoted"
    assert preference["promoted_instruction_id"] == made[0]["id"]
    assert preference["version"] == 2

    again = b.client.post(url, json={}, headers=h)
    assert again.status_code == 422
    assert again.json()["error"]["code"] == "preference_not_promotable"
    assert len(promoted_instructions(a, h)) == 1


def test_migration_closes_duplicate_current_versions(
    database_url: str | None, tmp_path: Path
) -> None:
    """Rows from before 0005 may hold two current versions of one item (the races it
    closes); the upgrade keeps the newest current, closes the rest as superseded by
    it, and only then creates the one-current-version index."""
    engine = create_db_engine(database_url or f"sqlite:///{tmp_path / 'old.db'}")
    command.upgrade(alembic_config(engine), "0003")
    tenant, user, item = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    rows = {version: uuid.uuid4() for version in (1, 2, 3)}
    insert = sa.text(
        "INSERT INTO instruction (id, instruction_id, version, tenant_id, user_id, text, "
        "always_on, status, source, embedding_model, embedding_dim, text_embedding, "
        "created_at, valid_from, valid_to) VALUES (:id, :item, :version, :tenant, :user, "
        ":text, false, 'active', 'app', 'm', 1, :vec, :at, :at, :to)"
    ).bindparams(
        sa.bindparam("id", type_=sa.Uuid()),
        sa.bindparam("item", type_=sa.Uuid()),
        sa.bindparam("tenant", type_=sa.Uuid()),
        sa.bindparam("user", type_=sa.Uuid()),
        sa.bindparam("at", type_=UTCDateTime()),
        sa.bindparam("to", type_=UTCDateTime()),
    )
    at = utcnow()
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO tenant (id, name, created_at) VALUES (:id, 't', :at)").bindparams(
                sa.bindparam("id", type_=sa.Uuid()),
                sa.bindparam("at", type_=UTCDateTime()),
            ),
            {"id": tenant, "at": at},
        )
        conn.execute(
            sa.text(
                "INSERT INTO app_user (id, tenant_id, external_id, created_at) "
                "VALUES (:id, :tenant, 'u', :at)"
            ).bindparams(
                sa.bindparam("id", type_=sa.Uuid()),
                sa.bindparam("tenant", type_=sa.Uuid()),
                sa.bindparam("at", type_=UTCDateTime()),
            ),
            {"id": user, "tenant": tenant, "at": at},
        )
        for version, row_id in rows.items():  # versions 2 and 3 both current
            conn.execute(
                insert,
                {
                    "id": row_id,
                    "item": item,
                    "version": version,
                    "tenant": tenant,
                    "user": user,
                    "text": f"v{version}",
                    "vec": b"\0\0\0\0",
                    "at": at,
                    "to": at if version == 1 else None,
                },
            )
    migrate(engine)
    with sa.orm.Session(engine) as session:
        versions = session.scalars(
            sa.select(Instruction)
            .where(col(Instruction.instruction_id) == item)
            .order_by(col(Instruction.version))
        ).all()
        assert [(v.version, v.valid_to is None) for v in versions] == [
            (1, False),
            (2, False),
            (3, True),
        ]
        assert versions[1].superseded_by == rows[3]
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:  # now enforced
        conn.execute(
            sa.update(Instruction).where(col(Instruction.id) == rows[2]).values(valid_to=None)
        )
    engine.dispose()
