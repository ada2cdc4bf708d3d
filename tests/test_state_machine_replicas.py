"""Two replicas, one database, random operations: every write goes through a replica
drawn at random, and after every step both replicas must answer as one service.

The replicas are two apps in this process, each with its own data folder (snapshots)
and its own vector cache, on one SQLite file or one PostgreSQL database: the same
code paths as two `tailor serve` processes (tests/test_replicas.py runs those), at a
speed hypothesis can afford. Their background followers are slowed down so that each
step drives them by hand: first the invariant proves the follower alone brings every
cache to SQL's rows (users who make no turns included), then that turns through
either replica give the same answer, which is the model's."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from service.app import create_app
from store.snapshot import read_snapshot
from tests.conftest import ADMIN_TOKEN, make_settings, wait_ready
from tests.fakes import HashingEmbedder, RuleBackend
from tests.postgres import PostgresServer

USERS = ("u1", "u2")
REPLICAS = st.integers(0, 1)
TOPICS = ("travel plan", "dinner recipe", "python code", "email reply")


class TwoReplicas(RuleBasedStateMachine):
    postgres: PostgresServer | None = None

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="tailor-sm2-"))
        self.database_url = (
            self.postgres.new_database() if self.postgres else f"sqlite:///{self.dir / 'shared.db'}"
        )
        self.embedder = HashingEmbedder()
        self.clients = [self._start(0), self._start(1)]
        response = self.clients[0].post(
            "/v1/tenants", json={"name": "t"}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )
        self.key = {"Authorization": f"Bearer {response.json()['api_key']['key']}"}
        for user in USERS:
            assert self.clients[1].post("/v1/users", json={"id": user}, headers=self.key)
        # The model of the database: per user, instruction id → (text, always_on), and
        # example ids. Lists keep creation order so hypothesis can replay its draws.
        self.instructions: dict[str, dict[str, tuple[str, bool]]] = {u: {} for u in USERS}
        self.examples: dict[str, list[str]] = {u: [] for u in USERS}
        self.deleted: list[uuid.UUID] = []
        self.counter = 0

    def _start(self, n: int) -> TestClient:
        app = create_app(
            make_settings(
                self.dir / f"replica{n}",
                database_url=self.database_url,
                index_follow_interval_s=60,  # driven by hand in the invariant
            ),
            embedder=self.embedder,
            backend=RuleBackend(),
        )
        client = TestClient(app)
        client.__enter__()
        wait_ready(client)
        return client

    def ports(self, n: int) -> Any:
        return self.clients[n].app.state.ports  # type: ignore[attr-defined]

    def text(self, user: str, topic: str) -> str:
        self.counter += 1
        return f"[{user}] item {self.counter} {topic}"

    # -- rules -------------------------------------------------------------------------

    @rule(
        via=REPLICAS,
        user=st.sampled_from(USERS),
        topic=st.sampled_from(TOPICS),
        always=st.booleans(),
    )
    def create_instruction(self, via: int, user: str, topic: str, always: bool) -> None:
        text = self.text(user, topic)
        response = self.clients[via].post(
            f"/v1/users/{user}/instructions",
            json={"text": text, "applies_when": topic, "always_on": always},
            headers=self.key,
        )
        assert response.status_code == 201, response.text
        self.instructions[user][response.json()["id"]] = (text, always)

    @precondition(lambda self: any(self.instructions.values()))
    @rule(via=REPLICAS, data=st.data(), action=st.sampled_from(["text", "always", "delete"]))
    def change_instruction(self, via: int, data: st.DataObject, action: str) -> None:
        user = data.draw(st.sampled_from([u for u in USERS if self.instructions[u]]))
        item = data.draw(st.sampled_from(list(self.instructions[user])))
        path = f"/v1/users/{user}/instructions/{item}"
        client = self.clients[via]
        if action == "delete":
            assert client.delete(path, headers=self.key).status_code == 204
            del self.instructions[user][item]
            return
        text, always = self.instructions[user][item]
        body: dict[str, Any] = (
            {"text": self.text(user, data.draw(st.sampled_from(TOPICS)))}
            if action == "text"
            else {"always_on": not always}
        )
        response = client.patch(path, json=body, headers=self.key)
        assert response.status_code == 200, response.text
        self.instructions[user][item] = (body.get("text", text), body.get("always_on", always))

    @rule(via=REPLICAS, user=st.sampled_from(USERS), topic=st.sampled_from(TOPICS))
    def add_example(self, via: int, user: str, topic: str) -> None:
        body = {"prompt": self.text(user, topic), "chosen": "yes", "rejected": "no"}
        response = self.clients[via].post(f"/v1/users/{user}/examples", json=body, headers=self.key)
        assert response.status_code == 201
        self.examples[user].append(response.json()["id"])

    @precondition(lambda self: any(self.examples.values()))
    @rule(via=REPLICAS, data=st.data())
    def delete_example(self, via: int, data: st.DataObject) -> None:
        user = data.draw(st.sampled_from([u for u in USERS if self.examples[u]]))
        item = data.draw(st.sampled_from(self.examples[user]))
        path = f"/v1/users/{user}/examples/{item}"
        assert self.clients[via].delete(path, headers=self.key).status_code == 204
        self.examples[user].remove(item)

    @rule(via=REPLICAS, user=st.sampled_from(USERS), topic=st.sampled_from(TOPICS))
    def record_unedited_turn(self, via: int, user: str, topic: str) -> None:
        same = self.text(user, "draft")
        body = {"context": topic, "draft": same, "edited": same, "applied_preference": same}
        response = self.clients[via].post(f"/v1/users/{user}/edits", json=body, headers=self.key)
        assert response.status_code == 202

    @rule(via=REPLICAS, user=st.sampled_from(USERS))
    def delete_and_recreate_user(self, via: int, user: str) -> None:
        ports = self.ports(via)
        scope = ports.users.resolve(ports.keys.authenticate(self.key["Authorization"][7:]), user)
        client = self.clients[via]
        assert client.delete(f"/v1/users/{user}", headers=self.key).status_code == 204
        self.deleted.append(scope.user_id)
        self.instructions[user] = {}
        self.examples[user] = []
        assert client.post("/v1/users", json={"id": user}, headers=self.key).status_code == 201

    @rule(which=REPLICAS, corrupt=st.booleans())
    def restart(self, which: int, corrupt: bool) -> None:
        self.clients[which].__exit__(None, None, None)
        if corrupt:
            for data in (self.dir / f"replica{which}" / "index").glob("seg-*.bin"):
                raw = bytearray(data.read_bytes())
                raw[len(raw) // 2] ^= 0xFF
                data.write_bytes(bytes(raw))
        self.clients[which] = self._start(which)

    # -- invariants ----------------------------------------------------------------------

    @invariant()
    def replicas_answer_as_one(self) -> None:
        model = self.embedder.model_id
        for n in (0, 1):  # the follower alone: no turn has run since the last step
            ports = self.ports(n)
            ports.index.follow()
            for source in (ports.instructions, ports.examples, ports.edits):
                in_sql = {(e.user_id, e.row_id) for e in source.entries(None, model=model)}
                in_cache = {
                    (e.user_id, e.row_id)
                    for e in ports.index.cache.entries()
                    if e.collection == source.collection
                }
                assert in_cache == in_sql, (n, source.collection)
            for user_id in self.deleted:
                assert not ports.index.cache.has_user(user_id)
                assert user_id not in ports.aggregator.cached_users()
            folder = self.dir / f"replica{n}" / "index"
            if (folder / "manifest.json").exists():
                held = {e.user_id for e in read_snapshot(folder, embedder_id=model, dim=64)[1]}
                assert not held & set(self.deleted)
        for user in USERS:
            topic = TOPICS[self.counter % len(TOPICS)]
            seen = [self._turn(n, user, topic) for n in (0, 1)]
            assert seen[0] == seen[1], (user, topic)
            instructions, examples = seen[0]
            model_ids = self.instructions[user]
            assert {i for i, _, _ in instructions} <= set(model_ids)
            always = {i for i, (_, on) in model_ids.items() if on}
            assert always <= {i for i, _, _ in instructions}
            assert {t for _, t, _ in instructions} <= {t for t, _ in model_ids.values()}
            assert {e for e, _ in examples} <= set(self.examples[user])

    def _turn(self, n: int, user: str, topic: str) -> tuple[list[Any], list[Any]]:
        response = self.clients[n].post(
            f"/v1/users/{user}/context",
            json={"messages": [{"role": "user", "content": topic}], "threshold": 0.0},
            headers=self.key,
        )
        assert response.status_code == 200, response.text
        body = response.json()
        return (
            [(i["id"], i["text"], round(i["score"] or 0, 5)) for i in body["instructions"]],
            [(e["id"], round(e["score"], 5)) for e in body["examples"]],
        )

    def teardown(self) -> None:
        for client in self.clients:
            client.__exit__(None, None, None)
        if self.postgres is None:
            sa.create_engine(self.database_url).dispose()
        shutil.rmtree(self.dir, ignore_errors=True)


# Modest by default (the suite must stay fast on two cores); raise for a longer hunt:
# TAILOR_TEST_REPLICA_EXAMPLES=200 pytest tests/test_state_machine_replicas.py
SETTINGS = settings(
    max_examples=int(os.environ.get("TAILOR_TEST_REPLICA_EXAMPLES", "6")),
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_two_replicas_on_sqlite() -> None:
    run_state_machine_as_test(TwoReplicas, settings=SETTINGS)


def test_two_replicas_on_postgres(postgres_server: PostgresServer) -> None:
    class OnPostgres(TwoReplicas):
        postgres = postgres_server

    run_state_machine_as_test(OnPostgres, settings=SETTINGS)
