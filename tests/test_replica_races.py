"""Real races over HTTP between two `tailor serve` replicas on one PostgreSQL: the two
(or three) requests of each try are released at once from threads, and the
invariants are checked after every try, in SQL and over the API:

- DELETE on A vs PATCH on B: an acknowledged delete is never undone;
- PATCH text on A vs PATCH applies_when on B: the current version's stored vectors
  are the embeddings of its own text and condition;
- promote x3 (A, B, A): exactly one instruction per promoted preference.

TAILOR_RACE_TRIES sets the tries per race (default 20). Every try's outcome is
counted and printed (`-s`), and all violations are reported together."""

from __future__ import annotations

import os
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from personalization.text import condition_focus
from store.vector_index import encode_vector
from tests.fakes import HashingEmbedder
from tests.replicas import Cluster, replicas  # noqa: F401

TRIES = int(os.environ.get("TAILOR_RACE_TRIES", "20"))
USER = "racer"
BASE = f"/v1/users/{USER}"


class Race:
    """Clients on the replicas, a pool that fires requests together, and the
    database the replicas share, for the invariant checks."""

    def __init__(self, cluster: Cluster) -> None:
        h = cluster.tenant()
        a, b = cluster.replicas
        self.a, self.b, self.a2 = a.client(h), b.client(h), a.client(h)
        assert self.a.post("/v1/users", json={"id": USER}).status_code == 201
        self.pool = ThreadPoolExecutor(max_workers=3)
        self.db: Engine = sa.create_engine(cluster.database_url)
        self.outcomes: Counter[str] = Counter()
        self.violations: list[str] = []
        self.violated: set[int] = set()

    def together(self, *calls: Callable[[], httpx.Response]) -> list[httpx.Response]:
        barrier = threading.Barrier(len(calls))

        def fire(call: Callable[[], httpx.Response]) -> httpx.Response:
            barrier.wait()
            return call()

        return [f.result() for f in [self.pool.submit(fire, c) for c in calls]]

    def check(self, n: int, ok: bool, message: str) -> None:
        if not ok:
            self.violations.append(f"try {n}: {message}")
            self.violated.add(n)

    def current_rows(self, instruction_id: str) -> list[sa.Row[Any]]:
        with self.db.connect() as conn:
            return list(
                conn.execute(
                    sa.text(
                        "SELECT version, status, text, applies_when, text_embedding, "
                        "condition_embedding FROM instruction "
                        "WHERE instruction_id = :id AND valid_to IS NULL"
                    ),
                    {"id": uuid.UUID(instruction_id)},
                )
            )

    def close(self) -> None:
        self.pool.shutdown()
        for client in (self.a, self.b, self.a2):
            client.close()
        self.db.dispose()


@pytest.fixture
def race(replicas: Cluster) -> Iterator[Race]:  # noqa: F811
    race = Race(replicas)
    yield race
    race.close()
    print(f"\n{TRIES} tries: {dict(race.outcomes)}; tries violated: {len(race.violated)}")
    assert race.violations == [], race.violations


def new_instruction(race: Race, **body: Any) -> str:
    made = race.a.post(f"{BASE}/instructions", json={"text": "Answer in French.", **body})
    assert made.status_code == 201, made.text
    instruction_id: str = made.json()["id"]
    return instruction_id


def test_delete_on_a_racing_patch_on_b_is_never_undone(race: Race) -> None:
    for n in range(TRIES):
        iid = new_instruction(race)
        url = f"{BASE}/instructions/{iid}"
        deleted, patched = race.together(
            partial(race.a.delete, url), partial(race.b.patch, url, json={"always_on": True})
        )
        race.outcomes[f"delete {deleted.status_code} / patch {patched.status_code}"] += 1
        for answer in (deleted, patched):
            race.check(n, answer.status_code in (200, 204, 404, 409), f"{answer.text}")
        rows = race.current_rows(iid)
        gone = race.b.get(url).status_code == 404
        if deleted.status_code == 204:
            race.check(
                n,
                gone and rows == [],
                f"acknowledged delete undone: {[(r.version, r.status) for r in rows]}",
            )
        else:
            race.check(n, not gone and len(rows) == 1, "unacknowledged delete happened")
        race.check(
            n,
            deleted.status_code == 204 or patched.status_code == 200,
            "neither write succeeded",
        )


def test_racing_patches_store_the_vectors_of_the_stored_text(race: Race) -> None:
    embedder = HashingEmbedder()  # the replicas' embedder (tests.replicas.FAST_EMBEDDER)
    for n in range(TRIES):
        iid = new_instruction(race, applies_when="when I ask about a recipe")
        url = f"{BASE}/instructions/{iid}"
        text, applies = race.together(
            partial(race.a.patch, url, json={"text": f"Use imperial units ({n})."}),
            partial(race.b.patch, url, json={"applies_when": f"when I ask about cars ({n})"}),
        )
        race.outcomes[f"text {text.status_code} / applies_when {applies.status_code}"] += 1
        race.check(n, 200 in (text.status_code, applies.status_code), "both lost")
        for answer in (text, applies):
            if answer.status_code != 200:
                code = answer.json()["error"]["code"]
                race.check(n, code == "concurrent_update", f"{answer.text}")
        (row,) = race.current_rows(iid)
        race.check(
            n,
            bytes(row.text_embedding) == encode_vector(embedder.embed([row.text])[0]),
            f"version {row.version} stores another text's vector",
        )
        condition = embedder.embed([condition_focus(row.applies_when)])[0]
        race.check(
            n,
            bytes(row.condition_embedding) == encode_vector(condition),
            f"version {row.version} stores another condition's vector",
        )


def test_three_promotes_at_once_make_one_instruction(race: Race) -> None:
    same = "Meeting moved to Thursday."
    for n in range(TRIES):
        edit = race.a.post(
            f"{BASE}/edits",
            json={"context": "team", "draft": same, "edited": same, "applied_preference": f"P{n}"},
        )
        assert edit.status_code == 202, edit.text
        pid = edit.json()["preference_id"]
        url = f"{BASE}/preferences/{pid}/promote"
        answers = race.together(
            partial(race.a.post, url, json={}),
            partial(race.b.post, url, json={"always_on": True}),
            partial(race.a2.post, url, json={}),
        )
        statuses = sorted(r.status_code for r in answers)
        race.outcomes[f"promote {statuses}"] += 1
        race.check(n, statuses.count(200) == 1, f"{statuses}")
        with race.db.connect() as conn:
            made = conn.execute(
                sa.text(
                    "SELECT DISTINCT instruction_id FROM instruction "
                    "WHERE source = 'inferred' AND text = :text"
                ),
                {"text": f"P{n}"},
            ).all()
        race.check(n, len(made) == 1, f"{len(made)} instructions from one preference")
        preference = race.b.get(f"{BASE}/preferences/{pid}").json()
        race.check(
            n,
            [str(m[0]) for m in made] == [preference["promoted_instruction_id"]],
            "the preference names another instruction",
        )
