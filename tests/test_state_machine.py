"""Isolation and cache consistency under random sequences of operations.

Two tenants with two users each; hypothesis drives creates, updates, deletes, edits,
examples, user deletion, context and export calls, clean restarts and restarts over a
corrupted snapshot. Every text carries its owner's tag, so any leak shows. Invariants,
checked after every step: every item returned belongs to the caller; the vector cache
holds exactly the active rows SQL holds for each user; a deleted user has no rows, no
cache entries, no snapshot content and no cached aggregation."""

from __future__ import annotations

import re
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
from tests.conftest import ADMIN_TOKEN, Api, make_settings, wait_ready
from tests.fakes import HashingEmbedder, RuleBackend
from tests.postgres import PostgresServer

TENANTS = ("ta", "tb")
USERS = ("u1", "u2")
OWNERS = st.sampled_from([(t, u) for t in TENANTS for u in USERS])
TOPICS = st.sampled_from(["travel plan", "dinner recipe", "python code", "email reply"])


class ProfileMachine(RuleBasedStateMachine):
    postgres: PostgresServer | None = None  # set to run the same machine on PostgreSQL

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="tailor-sm-"))
        self.database_url = self.postgres.new_database() if self.postgres else None
        self.embedder = HashingEmbedder()
        self.client = self._start()
        api = Api(self.client)
        self.keys: dict[str, dict[str, str]] = {}
        for tenant in TENANTS:
            response = self.client.post(
                "/v1/tenants",
                json={"name": tenant},
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            )
            self.keys[tenant] = {"Authorization": f"Bearer {response.json()['api_key']['key']}"}
            for user in USERS:
                api.user(self.keys[tenant], user)
        # Lists in creation order: hypothesis must be able to replay its draws, and ids
        # are random, so rules draw positions, never ids.
        self.instructions: dict[tuple[str, str], list[str]] = {o: [] for o in self._owners()}
        self.examples: dict[tuple[str, str], list[str]] = {o: [] for o in self._owners()}
        self.deleted_users: list[uuid.UUID] = []
        self.counter = 0

    @staticmethod
    def _owners() -> list[tuple[str, str]]:
        return [(t, u) for t in TENANTS for u in USERS]

    def _start(self) -> TestClient:
        app = create_app(
            make_settings(
                self.dir / "data", snapshot_interval_s=3600, database_url=self.database_url
            ),
            embedder=self.embedder,
            backend=RuleBackend(),
        )
        client = TestClient(app)
        client.__enter__()
        wait_ready(client)
        return client

    @property
    def ports(self) -> Any:
        return self.client.app.state.ports  # type: ignore[attr-defined]

    def tag(self, owner: tuple[str, str]) -> str:
        self.counter += 1
        return f"[{owner[0]}/{owner[1]}] item {self.counter}"

    # -- rules -------------------------------------------------------------------------

    @rule(owner=OWNERS, topic=TOPICS, always=st.booleans())
    def create_instruction(self, owner: tuple[str, str], topic: str, always: bool) -> None:
        tenant, user = owner
        response = self.client.post(
            f"/v1/users/{user}/instructions",
            json={"text": f"{self.tag(owner)} {topic}", "applies_when": topic, "always_on": always},
            headers=self.keys[tenant],
        )
        assert response.status_code == 201
        self.instructions[owner].append(response.json()["id"])

    @precondition(lambda self: any(self.instructions.values()))
    @rule(data=st.data(), delete=st.booleans())
    def change_instruction(self, data: st.DataObject, delete: bool) -> None:
        owner = data.draw(st.sampled_from([o for o, ids in self.instructions.items() if ids]))
        item = self.instructions[owner][
            data.draw(st.integers(0, len(self.instructions[owner]) - 1))
        ]
        tenant, user = owner
        path = f"/v1/users/{user}/instructions/{item}"
        if delete:
            assert self.client.delete(path, headers=self.keys[tenant]).status_code == 204
            self.instructions[owner].remove(item)
        else:
            response = self.client.patch(
                path, json={"text": f"{self.tag(owner)} changed"}, headers=self.keys[tenant]
            )
            assert response.status_code == 200

    @precondition(lambda self: any(self.instructions.values()))
    @rule(data=st.data(), intruder=st.sampled_from(TENANTS))
    def probe_someone_elses_instruction(self, data: st.DataObject, intruder: str) -> None:
        owner = data.draw(st.sampled_from([o for o, ids in self.instructions.items() if ids]))
        if owner[0] == intruder:
            return
        item = self.instructions[owner][
            data.draw(st.integers(0, len(self.instructions[owner]) - 1))
        ]
        path = f"/v1/users/{owner[1]}/instructions/{item}"
        for response in [
            self.client.get(path, headers=self.keys[intruder]),
            self.client.patch(path, json={"text": "pwned"}, headers=self.keys[intruder]),
            self.client.delete(path, headers=self.keys[intruder]),
        ]:
            assert response.status_code == 404

    @rule(owner=OWNERS, topic=TOPICS)
    def add_example(self, owner: tuple[str, str], topic: str) -> None:
        tenant, user = owner
        body = {
            "prompt": f"{self.tag(owner)} {topic}",
            "chosen": self.tag(owner),
            "rejected": self.tag(owner),
        }
        response = self.client.post(
            f"/v1/users/{user}/examples", json=body, headers=self.keys[tenant]
        )
        assert response.status_code == 201
        self.examples[owner].append(response.json()["id"])

    @rule(owner=OWNERS, topic=TOPICS)
    def record_unedited_turn(self, owner: tuple[str, str], topic: str) -> None:
        tenant, user = owner
        same = f"{self.tag(owner)} draft"
        body = {
            "context": topic,
            "draft": same,
            "edited": same,
            "applied_preference": self.tag(owner),
        }
        response = self.client.post(f"/v1/users/{user}/edits", json=body, headers=self.keys[tenant])
        assert response.status_code == 202
        assert response.json()["inference_status"] == "skipped"

    @rule(owner=OWNERS)
    def delete_and_recreate_user(self, owner: tuple[str, str]) -> None:
        tenant, user = owner
        scope = self.ports.users.resolve(
            self.ports.keys.authenticate(self.keys[tenant]["Authorization"][7:]), user
        )
        assert self.client.delete(f"/v1/users/{user}", headers=self.keys[tenant]).status_code == 204
        self.deleted_users.append(scope.user_id)
        self.instructions[owner] = []
        self.examples[owner] = []
        assert (
            self.client.post("/v1/users", json={"id": user}, headers=self.keys[tenant]).status_code
            == 201
        )

    @rule(owner=OWNERS, topic=TOPICS)
    def context_and_export_stay_in_scope(self, owner: tuple[str, str], topic: str) -> None:
        tenant, user = owner
        mine = f"[{tenant}/{user}]"
        ctx = self.client.post(
            f"/v1/users/{user}/context",
            json={"messages": [{"role": "user", "content": topic}], "threshold": 0.0},
            headers=self.keys[tenant],
        ).json()
        assert all(i["text"].startswith(mine) for i in ctx["instructions"])
        assert {i["id"] for i in ctx["instructions"]} <= set(self.instructions[owner])
        assert {e["id"] for e in ctx["examples"]} <= set(self.examples[owner])
        if ctx["inferred_preference"]:  # aggregated by the fake model, which quotes its inputs
            tags = re.findall(r"\[\w+/\w+\]", ctx["inferred_preference"]["text"])
            assert tags
            assert set(tags) == {mine}
        export = self.client.get(f"/v1/users/{user}/export", headers=self.keys[tenant]).json()
        for row in export["instructions"] + export["preferences"]:
            assert row["text"].startswith(mine)
        for row in export["examples"]:
            assert row["prompt"].startswith(mine)

    @rule(corrupt=st.booleans())
    def restart(self, corrupt: bool) -> None:
        self.client.__exit__(None, None, None)
        if corrupt:
            for data in (self.dir / "data" / "index").glob("seg-*.bin"):
                raw = bytearray(data.read_bytes())
                raw[len(raw) // 2] ^= 0xFF
                data.write_bytes(bytes(raw))
        self.client = self._start()
        # A damaged table rebuilds everything, a damaged live block its user; the flipped
        # byte may also lie in padding or a dead block, which nothing reads. Either way
        # the invariants below hold: nothing damaged is served.

    # -- invariants ----------------------------------------------------------------------

    @invariant()
    def cache_matches_sql(self) -> None:
        ports = self.ports
        model = self.embedder.model_id
        for source in (ports.instructions, ports.examples, ports.edits):
            assert ports.index.cache.row_count(source.collection) == source.count_rows(model=model)
            in_sql = {(e.user_id, e.row_id) for e in source.entries(None, model=model)}
            in_cache = {
                (e.user_id, e.row_id)
                for e in ports.index.cache.entries()
                if e.collection == source.collection
            }
            assert in_cache == in_sql

    @invariant()
    def deleted_users_leave_nothing(self) -> None:
        if not self.deleted_users:
            return
        ports = self.ports
        with ports.engine.connect() as conn:
            for table in ("instruction", "preference_example", "edit", "inferred_preference"):
                left = conn.execute(
                    sa.select(sa.func.count())
                    .select_from(sa.table(table, sa.column("user_id")))
                    .where(sa.column("user_id").in_(self.deleted_users))
                ).scalar()
                assert left == 0, table
        for user_id in self.deleted_users:
            assert not ports.index.cache.has_user(user_id)
            assert user_id not in ports.aggregator.cached_users()
        snapshot = self.dir / "data" / "index"
        if (snapshot / "manifest.json").exists():
            users = {
                e.user_id
                for e in read_snapshot(snapshot, embedder_id=self.embedder.model_id, dim=64)[1]
            }
            assert not users & set(self.deleted_users)

    def teardown(self) -> None:
        self.client.__exit__(None, None, None)
        shutil.rmtree(self.dir, ignore_errors=True)


SETTINGS = settings(
    max_examples=25,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_state_machine_on_sqlite() -> None:
    run_state_machine_as_test(ProfileMachine, settings=SETTINGS)


def test_state_machine_on_postgres(postgres_server: PostgresServer) -> None:
    class OnPostgres(ProfileMachine):
        postgres = postgres_server

    run_state_machine_as_test(OnPostgres, settings=SETTINGS)
