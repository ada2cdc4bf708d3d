"""Two real `tailor serve` replicas on one PostgreSQL database answer as one service:
a write through either shows in the other's turns at once (the per-turn freshness
check), in its memory without any turn (the change-log follower), survives restarts,
and a deleted user leaves no byte of its vectors under either replica's data folder."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from store.snapshot import MANIFEST
from tests.postgres import PostgresServer
from tests.replicas import Cluster, Replica, replicas, start_cluster

__all__ = ["replicas"]


def _fast_cluster(server: PostgresServer, root: Path) -> Cluster:
    """Snapshots every 0.5 s and a follower poll every 0.2 s, so convergence is quick."""
    return start_cluster(server, root, snapshot_interval_s="0.5", index_follow_interval_s="0.2")


def _turn(client: httpx.Client, user: str, text: str) -> dict[str, Any]:
    response = client.post(
        f"/v1/users/{user}/context",
        # Ranked selection (not the whole small profile): a turn shows what the index
        # matched, which is what coherence is about.
        json={
            "messages": [{"role": "user", "content": text}],
            "threshold": 0.5,
            "whole_profile": False,
        },
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _seen(body: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    """What a turn used, without the per-turn random marker of the system message."""
    return (
        [(i["id"], i["version"], i["reason"], i["score"]) for i in body["instructions"]],
        [(e["id"], e["score"]) for e in body["examples"]],
    )


def _eventually(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not converged in {timeout}s: {what}"
        time.sleep(0.1)


def _vectors(replica: Replica) -> int:
    return int(httpx.get(f"{replica.base}/readyz", timeout=5).json()["vectors"])


def test_writes_through_one_replica_show_in_the_others_turns(replicas: Cluster) -> None:
    h = replicas.tenant()
    a, b = (r.client(h) for r in replicas.replicas)
    assert a.post("/v1/users", json={"id": "u1"}).status_code == 201
    made = a.post(
        "/v1/users/u1/instructions",
        json={"text": "Use metric units", "applies_when": "cooking recipe dinner"},
    )
    assert made.status_code == 201
    rule = made.json()["id"]
    example = a.post(
        "/v1/users/u1/examples",
        json={"prompt": "dinner recipe ideas", "chosen": "grams", "rejected": "cups"},
    ).json()["id"]

    on_a, on_b = _turn(a, "u1", "a dinner recipe"), _turn(b, "u1", "a dinner recipe")
    assert [i["id"] for i in on_b["instructions"]] == [rule]
    assert [e["id"] for e in on_b["examples"]] == [example]
    assert _seen(on_b) == _seen(on_a)

    changed = b.patch(
        f"/v1/users/u1/instructions/{rule}",
        json={"text": "Plant in spring", "applies_when": "garden plants flowers"},
    )
    assert changed.status_code == 200
    assert _turn(a, "u1", "a dinner recipe")["instructions"] == []
    garden = _turn(a, "u1", "garden flowers")
    assert [(i["id"], i["version"]) for i in garden["instructions"]] == [(rule, 2)]
    assert _seen(garden) == _seen(_turn(b, "u1", "garden flowers"))

    assert a.delete(f"/v1/users/u1/instructions/{rule}").status_code == 204
    assert a.delete(f"/v1/users/u1/examples/{example}").status_code == 204
    for client in (a, b):
        gone = _turn(client, "u1", "garden flowers dinner recipe")
        assert gone["instructions"] == [] and gone["examples"] == []


def test_replicas_follow_the_database_without_turns(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    cluster = _fast_cluster(postgres_server, tmp_path)
    try:
        h = cluster.tenant()
        first, second = cluster.replicas
        a = first.client(h)
        assert a.post("/v1/users", json={"id": "u1"}).status_code == 201
        rule = a.post(
            "/v1/users/u1/instructions", json={"text": "Be brief", "applies_when": "email reply"}
        ).json()["id"]
        a.post("/v1/users/u1/examples", json={"prompt": "p", "chosen": "c", "rejected": "r"})
        # text + condition + example prompt, in the other replica's memory and snapshot
        _eventually(lambda: _vectors(second) == 3, "create reached the other replica")
        _eventually(lambda: _snapshot_count(second.data) == 3, "the other replica's snapshot")
        assert a.delete(f"/v1/users/u1/instructions/{rule}").status_code == 204
        _eventually(lambda: _vectors(second) == 1, "delete reached the other replica")
        _eventually(lambda: _snapshot_count(second.data) == 1, "snapshot after the delete")
    finally:
        cluster.stop()
    assert "Traceback" not in cluster.logs(), cluster.logs()


def _snapshot_count(data: Path) -> int:
    manifest = data / "index" / MANIFEST
    return int(json.loads(manifest.read_text())["count"]) if manifest.exists() else -1


def _user_vectors(url: str, user: str) -> list[bytes]:
    """The float32 bytes of every vector the database holds for this user."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            uid = conn.execute(
                sa.text("select id from app_user where external_id = :u"), {"u": user}
            ).scalar_one()
            found: list[bytes] = []
            for query in (
                "select text_embedding, condition_embedding from instruction where user_id = :u",
                "select prompt_embedding, null from preference_example where user_id = :u",
                "select context_embedding, null from edit where user_id = :u",
            ):
                for row in conn.execute(sa.text(query), {"u": uid}):
                    found += [bytes(v) for v in row if v is not None]
            return found
    finally:
        engine.dispose()


def _files_holding(root: Path, needles: list[bytes]) -> list[str]:
    """Files under `root` holding any of these byte strings."""
    return sorted(
        str(path.relative_to(root))
        for path in root.rglob("*")
        if path.is_file() and any(n in path.read_bytes() for n in needles)
    )


def _holds_all(root: Path, needles: list[bytes]) -> bool:
    blobs = [p.read_bytes() for p in root.rglob("*") if p.is_file()]
    return all(any(n in blob for blob in blobs) for n in needles)


def test_a_deleted_user_leaves_no_vector_byte_on_any_replica(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    cluster = _fast_cluster(postgres_server, tmp_path)
    try:
        h = cluster.tenant()
        first, second = cluster.replicas
        a, b = first.client(h), second.client(h)
        for user in ("u1", "u2"):
            assert a.post("/v1/users", json={"id": user}).status_code == 201
        for n in range(3):
            b.post(
                "/v1/users/u1/instructions",
                json={"text": f"secret rule q{n}zz", "applies_when": f"topic k{n}yy"},
            )
            a.post(
                "/v1/users/u1/examples",
                json={"prompt": f"private prompt m{n}ww", "chosen": "c", "rejected": "r"},
            )
        b.post(
            "/v1/users/u1/edits",
            json={
                "context": "travel note",
                "draft": "x y",
                "edited": "x y",
                "applied_preference": "p",
            },
        )
        a.post("/v1/users/u2/instructions", json={"text": "keeps me", "always_on": True})
        secret = _user_vectors(cluster.database_url, "u1")
        assert len(secret) == 10
        for replica in cluster.replicas:
            _eventually(partial(_holds_all, replica.data, secret), "u1 snapshotted")
        # what a SIGKILL in the middle of a snapshot write leaves behind
        second.stop()
        index = second.data / "index"
        data_file = next(index.glob("seg-*.bin"))
        shutil.copy(data_file, index / f".{data_file.name}.0123abcd.tmp")
        shutil.copy(data_file, index / "seg-1-deadbeef.bin")  # an orphan, never named
        second.start()

        assert a.delete("/v1/users/u1").status_code == 204
        for replica in cluster.replicas:
            _eventually(lambda r=replica: _vectors(r) == 1, "u1 left memory")  # type: ignore[misc]
            _eventually(
                lambda r=replica: not _files_holding(r.data, secret),  # type: ignore[misc]
                f"u1's vectors left {replica.data}",
            )
            assert _files_holding(replica.data, secret) == []
        assert b.get("/v1/users/u1").status_code == 404
    finally:
        cluster.stop()
    assert "Traceback" not in cluster.logs(), cluster.logs()


def test_restart_over_a_snapshot_that_claims_to_cover_an_edit(replicas: Cluster) -> None:
    """The snapshot's change sequence covers the other replica's edit, yet holds the old
    version's vectors; an edit leaves the row count unchanged, so only the row ids tell."""
    h = replicas.tenant()
    first, second = replicas.replicas
    a, b = first.client(h), second.client(h)
    assert b.post("/v1/users", json={"id": "u1"}).status_code == 201
    rule = b.post(
        "/v1/users/u1/instructions", json={"text": "Metric", "applies_when": "cooking recipe"}
    ).json()["id"]
    second.stop()  # its snapshot holds version 1
    assert (
        a.patch(
            f"/v1/users/u1/instructions/{rule}", json={"applies_when": "garden flowers"}
        ).status_code
        == 200
    )
    engine = sa.create_engine(replicas.database_url)
    with engine.connect() as conn:
        last = conn.execute(sa.text("select max(seq) from change_log")).scalar_one()
    engine.dispose()
    manifest = second.data / "index" / MANIFEST
    body = json.loads(manifest.read_text())
    body["last_change_seq"] = int(last)
    manifest.write_text(json.dumps(body))
    second.start()
    b = second.client(h)
    garden = _turn(b, "u1", "garden flowers")
    assert [(i["id"], i["version"]) for i in garden["instructions"]] == [(rule, 2)]
    assert _turn(b, "u1", "cooking recipe")["instructions"] == []
    assert _seen(garden) == _seen(_turn(a, "u1", "garden flowers"))
