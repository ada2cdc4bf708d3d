"""Edit claim vs restart on real `tailor serve` replicas of one PostgreSQL database, with
a real OpenAI-compatible model server that answers only when the test lets it: while
replica 0 holds an edit job, replica 1 restarts. Invariant for every round: the edit is
done with exactly one inferred preference, from exactly one model call."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.postgres import PostgresServer
from tests.replicas import Cluster, start_cluster
from tests.scripted_server import Scripted, ScriptedServer
from tests.test_cipher import LONG, SHORT

ROUNDS = 3


@pytest.fixture
def model() -> Iterator[ScriptedServer]:
    with ScriptedServer() as running:
        yield running


@pytest.fixture
def cluster(
    postgres_server: PostgresServer, tmp_path: Path, model: ScriptedServer
) -> Iterator[Cluster]:
    running = start_cluster(
        postgres_server,
        tmp_path,
        model_backend="openai",
        model_base_url=model.base_url,
        model_name="served-model",
        model_max_retries="0",
        edit_lease_s="30",
        edit_retry_backoff_s="0.1",
    )
    yield running
    running.stop()
    assert "Traceback" not in running.logs(), running.logs()


def _wait(client: httpx.Client, path: str, states: set[str], timeout: float = 60) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        edit: dict[str, str] = client.get(path).json()
        if edit["inference_status"] in states:
            return edit
        time.sleep(0.1)
    raise AssertionError(f"edit still {edit['inference_status']}")


def test_a_restart_never_runs_another_replicas_live_edit_job(
    cluster: Cluster, model: ScriptedServer
) -> None:
    h = cluster.tenant()
    first, second = cluster.replicas
    edit_ids: list[str] = []
    with first.client(h) as a, second.client(h) as b:
        assert a.post("/v1/users", json={"id": "alice"}).status_code == 201
        for n in range(ROUNDS):
            answer = threading.Event()
            model.script = [Scripted(text="Prefers short notes.", hold=answer)] * 2
            created = a.post(
                "/v1/users/alice/edits",
                json={"context": f"round {n}", "draft": LONG, "edited": SHORT},
            )
            assert created.status_code == 202, created.text
            edit_ids.append(created.json()["id"])
            path = f"/v1/users/alice/edits/{edit_ids[-1]}"
            _wait(a, path, {"running"})
            second.restart()  # while replica 0's model call is in flight
            time.sleep(1)  # replica 1's worker has had its chance to take the job
            answer.set()
            assert _wait(b, path, {"done", "failed"})["inference_status"] == "done"
        time.sleep(2)  # a second, wrongful run of a job would have finished by now
        preferences = b.get("/v1/users/alice/preferences").json()["items"]
    per_edit = [sum(p["source_edit_id"] == edit_id for p in preferences) for edit_id in edit_ids]
    violations = sum(count != 1 for count in per_edit)
    assert violations == 0, f"{violations} of {ROUNDS} rounds: preferences per edit {per_edit}"
    assert len(model.requests) == ROUNDS  # one model call per edit, none repeated
