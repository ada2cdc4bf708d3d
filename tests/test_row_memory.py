"""A large profile's top rows are served from memory held with the user's block, not
read from SQL every turn (personalization/candidates.py, VectorCache.keep_row_fields).
The memory must follow SQL as the vectors do: every change to a row's fields (a new
version, a delete, a re-derivation in place) reaches the cache as that row's removal,
which drops what is held for it. Unit tests over the cache and a fake repository, and
two apps on one database (SQLite and PostgreSQL) for the real paths."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

from personalization.candidates import InstructionCandidates
from personalization.selection import SelectionPolicy
from service.ports import Ports
from store.derivation import Rederived, rederive
from store.instructions import (
    COLLECTION,
    ROLE_TEXT,
    ActiveInstruction,
    InstructionEmbeddings,
)
from store.models import InstructionKind
from store.scope import UserScope
from store.vector_index import (
    MAX_HELD_FIELDS,
    BlockRanking,
    RowScores,
    VectorCache,
    pack_meta,
)
from tests.conftest import Api
from tests.test_item_refresh import imported_pair, ports_of
from tests.test_topk_exact import (
    DIM,
    DOMAINS,
    FakeIndex,
    FakeRepository,
    brute_force,
    chosen,
    cost,
    fill,
    scope_of,
    turn_of,
    unit,
)


def by_score(rows: RowScores) -> Any:
    return rows.best.astype(np.float64)


def block_of(n: int, seed: int = 0) -> tuple[VectorCache, uuid.UUID, list[uuid.UUID], Any]:
    cache, user = VectorCache(DIM), uuid.uuid4()
    rng = np.random.default_rng(seed)
    ids = [uuid.uuid4() for _ in range(n)]
    for row_id in ids:
        cache.put(user, COLLECTION, row_id, [(ROLE_TEXT, unit(rng))])
    return cache, user, ids, unit(rng)


def ranked(cache: VectorCache, user: uuid.UUID, query: Any) -> BlockRanking:
    ranking = cache.ranking(user, COLLECTION, query, by_score)
    assert ranking is not None
    return ranking


def at(ranking: BlockRanking, row_id: uuid.UUID) -> int:
    return list(ranking.row_ids).index(row_id)


def test_fields_kept_with_a_row_leave_with_it() -> None:
    cache, user, ids, query = block_of(40)
    ranking = ranked(cache, user, query)
    everything = {at(ranking, r): f"fields of {r}" for r in ids}
    cache.keep_row_fields(user, COLLECTION, ranking, everything)
    assert cache.row_fields(user, COLLECTION, ranking, everything) == everything
    # A delete, a new version and a re-derivation in place all reach the cache as the
    # row's removal (a re-derived row comes back under its id, at another index).
    cache.remove(user, COLLECTION, ids[0])
    cache.put(user, COLLECTION, ids[1], [(ROLE_TEXT, query)], meta=3)
    cache.replace_rows(user, COLLECTION, [ids[2]], [])
    fresh = ranked(cache, user, query)
    held = cache.row_fields(user, COLLECTION, fresh, range(len(fresh)))
    assert set(held.values()) == {f"fields of {r}" for r in ids[3:]}
    assert all(fresh.row_ids[i] not in ids[:3] for i in held)
    assert all(held[i] == f"fields of {fresh.row_ids[i]}" for i in held)
    # A reload of the user (the whole-user refresh) forgets every row's fields.
    cache.replace_users([user], [])
    assert cache.ranking(user, COLLECTION, query, by_score) is None


def test_fields_read_for_a_row_removed_meanwhile_are_not_kept() -> None:
    """A turn reads SQL after it ranked: a row replaced in between (its change applied
    by the follower) must not get the turn's read, which may predate the change."""
    cache, user, ids, query = block_of(40)
    ranking = ranked(cache, user, query)
    cache.put(user, COLLECTION, ids[5], [(ROLE_TEXT, query)])  # re-derived meanwhile
    cache.remove(user, COLLECTION, ids[6])  # deleted meanwhile
    cache.keep_row_fields(
        user, COLLECTION, ranking, {at(ranking, r): "read before" for r in ids[5:8]}
    )
    fresh = ranked(cache, user, query)
    held = cache.row_fields(user, COLLECTION, fresh, range(len(fresh)))
    assert [fresh.row_ids[i] for i in held] == [ids[7]]


def test_a_compaction_keeps_the_fields_of_live_rows_and_stale_rankings_see_none() -> None:
    cache, user, ids, query = block_of(1500)
    ranking = ranked(cache, user, query)
    cache.keep_row_fields(user, COLLECTION, ranking, {at(ranking, r): str(r) for r in ids})
    for row_id in ids[:1000]:  # most of the block dies: it compacts (new row indexes)
        cache.remove(user, COLLECTION, row_id)
    # The old ranking's indexes mean other rows now: nothing is read or kept by them.
    assert cache.row_fields(user, COLLECTION, ranking, range(len(ranking))) == {}
    cache.keep_row_fields(user, COLLECTION, ranking, {0: "wrong row"})
    fresh = ranked(cache, user, query)
    held = cache.row_fields(user, COLLECTION, fresh, range(len(fresh)))
    assert len(held) == 500
    assert all(held[i] == str(fresh.row_ids[i]) for i in held)


def test_a_block_holds_a_bounded_number_of_rows_fields() -> None:
    cache, user, ids, query = block_of(MAX_HELD_FIELDS + 300)
    ranking = ranked(cache, user, query)
    index_of = {row_id: i for i, row_id in enumerate(ranking.row_ids)}
    step = MAX_HELD_FIELDS // 4
    for start in range(0, len(ids), step):
        batch = {index_of[r]: str(r) for r in ids[start : start + step]}
        cache.keep_row_fields(user, COLLECTION, ranking, batch)
        held = cache.row_fields(user, COLLECTION, ranking, range(len(ranking)))
        assert 0 < len(held) <= MAX_HELD_FIELDS
        assert all(held[i] == str(ranking.row_ids[i]) for i in held)
    # What was kept last is held: the memory starts over, it does not freeze.
    assert all(index_of[r] in held for r in ids[-300:])


class CountingRepository(FakeRepository):
    """Counts the reads by id, so a test can tell memory from SQL."""

    def __init__(self) -> None:
        super().__init__()
        self.by_id = 0

    def active(
        self,
        scope: UserScope,
        *,
        row_ids: Sequence[uuid.UUID] | None = None,
        always_on: bool | None = None,
    ) -> list[ActiveInstruction]:
        if row_ids is not None:
            self.by_id += 1
        return super().active(scope, row_ids=row_ids, always_on=always_on)


@pytest.mark.parametrize("seed", range(3))
def test_a_steady_turn_reads_no_sql_and_selects_what_a_scan_selects(seed: int) -> None:
    repo, cache, user = CountingRepository(), VectorCache(DIM), uuid.uuid4()
    fill(seed, 400, repo, cache, user)
    turn = turn_of(seed)
    candidates = InstructionCandidates(
        cast(Any, repo), cast(Any, FakeIndex(cache)), cast(Any, FixedDomains(turn))
    )
    policy = SelectionPolicy(token_budget=4000, max_items=5, floor=0.0)
    query = unit(np.random.default_rng(seed + 100))
    scope = scope_of(user)
    for step in range(3):
        repo.by_id = 0
        got = candidates.select(scope, query, policy, cost)
        want = brute_force(repo, cache, scope, query, policy, turn)
        assert chosen(got) == chosen(want)
        assert [s.instruction for s in got.selected] == [s.instruction for s in want.selected]
        assert (repo.by_id > 0) == (step == 0), step


def test_a_row_re_derived_in_place_is_read_again() -> None:
    """Re-derivation changes kind and domains on the same row id: the cache hears of it
    as the row's replacement, so the next turn reads the row's new fields."""
    repo, cache, user = CountingRepository(), VectorCache(DIM), uuid.uuid4()
    fill(7, 300, repo, cache, user)
    turn = turn_of(7)
    candidates = InstructionCandidates(
        cast(Any, repo), cast(Any, FakeIndex(cache)), cast(Any, FixedDomains(turn))
    )
    policy = SelectionPolicy(token_budget=4000, max_items=5, floor=-1.0)
    query = unit(np.random.default_rng(8))
    scope = scope_of(user)
    first = candidates.select(scope, query, policy, cost)
    top = next(s.instruction for s in first.selected if not s.instruction.always_on)
    # Asked again with the row's own vector, it stays chosen whatever its new terms.
    query = next(e.vector for e in cache.entries() if e.row_id == top.row_id)
    candidates.select(scope, query, policy, cost)
    kind = (
        InstructionKind.style
        if top.kind == InstructionKind.constraint
        else InstructionKind.constraint
    )
    best = max(DOMAINS, key=turn.centred.__getitem__)  # its new domain lifts its rank
    changed = replace(top, kind=kind, domains=(best,))
    repo.rows[user] = [changed if r.row_id == top.row_id else r for r in repo.rows[user]]
    vectors = [(e.role, e.vector) for e in cache.entries() if e.row_id == top.row_id]
    meta = pack_meta(False, kind == InstructionKind.constraint, (best,), DOMAINS)
    cache.replace_rows(user, COLLECTION, [top.row_id], [])
    cache.put(user, COLLECTION, top.row_id, vectors, meta)
    repo.by_id = 0
    got = candidates.select(scope, query, policy, cost)
    assert repo.by_id > 0
    want = brute_force(repo, cache, scope, query, policy, turn)
    assert changed in [s.instruction for s in want.selected]
    assert [s.instruction for s in got.selected] == [s.instruction for s in want.selected]
    assert chosen(got) == chosen(want)


class FixedDomains:
    def __init__(self, turn: Any) -> None:
        self.turn = turn

    def turn_domains(self, query: Any) -> Any:
        return self.turn


# -- two apps on one database -------------------------------------------------------

USER = "big"
ITEMS = 60


class SqlReads:
    """Counts a replica's reads of instruction rows by id (the per-turn fetch)."""

    def __init__(self, ports: Ports, monkeypatch: pytest.MonkeyPatch) -> None:
        self.by_id = 0
        inner = ports.instructions.active

        def active(scope: UserScope, **kwargs: Any) -> list[ActiveInstruction]:
            if kwargs.get("row_ids") is not None:
                self.by_id += 1
            return inner(scope, **kwargs)

        monkeypatch.setattr(ports.instructions, "active", active)


@pytest.fixture
def replicas(start_app: Callable[..., Api], database_url: str | None, tmp_path: Path) -> Any:
    def items(ports: Ports) -> Iterable[tuple[str, InstructionEmbeddings]]:
        for i in range(ITEMS):
            text = f"Rule {i}: answer about topic {i} briefly"
            yield text, ports.writer.instruction_keys(text, None)

    return imported_pair(start_app, database_url, tmp_path, USER, items)


def found(body: Any, item_id: str) -> list[dict[str, Any]]:
    return [item for item in body["instructions"] if item["id"] == item_id]


def test_an_edit_a_delete_and_a_re_derivation_on_one_replica_show_on_the_others_next_turn(
    replicas: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b, headers, _ = replicas
    text = "I am allergic to peanuts"
    created = a.instruction(headers, USER, text=text, applies_when="when I ask about food")
    item = created["id"]
    reads = SqlReads(ports_of(b), monkeypatch)
    first = b.context(headers, USER, text, threshold=0.0)
    assert [i["text"] for i in found(first, item)] == [text]
    assert reads.by_id > 0
    reads.by_id = 0
    again = b.context(headers, USER, text, threshold=0.0)
    assert found(again, item) == found(first, item)
    assert reads.by_id == 0  # served from B's memory

    # An edit on A: a new version row; B's next turn has the new text, not the old.
    edited = "I am allergic to peanuts and cashews"
    patched = a.client.patch(
        f"/v1/users/{USER}/instructions/{item}", json={"text": edited}, headers=headers
    )
    assert patched.status_code == 200, patched.text
    body = b.context(headers, USER, edited, threshold=0.0)
    assert [(i["text"], i["version"]) for i in found(body, item)] == [(edited, 2)]
    assert text not in [i["text"] for i in body["instructions"]]

    # A re-derivation on A: kind and domains change in place, on the same row id.
    before = found(body, item)[0]["kind"]
    flipped = InstructionKind.style if before == "constraint" else InstructionKind.constraint
    b.context(headers, USER, edited, threshold=0.0)  # B holds the row's fields again

    def derive(text: str, vector: Any, pinned: InstructionKind | None) -> Rederived:
        return Rederived(kind=flipped, domains=["food"])

    engine = ports_of(a).engine
    model = ports_of(a).writer.instruction_keys("x", None).model
    assert rederive(engine, derive, "test-flip", embedding_model=model) > 0
    body = b.context(headers, USER, edited, threshold=0.0)
    assert [(i["version"], i["kind"]) for i in found(body, item)] == [(2, flipped.value)]

    # A delete on A: B's next turn no longer has the item.
    deleted = a.client.delete(f"/v1/users/{USER}/instructions/{item}", headers=headers)
    assert deleted.status_code in (200, 204), deleted.text
    body = b.context(headers, USER, edited, threshold=0.0)
    assert found(body, item) == []
    assert body["instructions"]  # the profile still answers, from the other rows
