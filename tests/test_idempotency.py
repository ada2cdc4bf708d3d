"""Idempotency-Key on the POSTs that create things, over HTTP, on SQLite and
PostgreSQL: a retry gets the first response and writes nothing; the same key with
another body is refused; racing retries are settled by the database; a failed
request releases its key; keys expire; a deleted user's records go with them."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import httpx
import sqlalchemy as sa
from sqlmodel import Session, select

from store.clock import utcnow
from store.models import IdempotencyRecord
from tests.conftest import Api
from tests.test_concurrent_writes import BASE, USER, accepted_preference, engine_of, pair  # noqa: F401


def keyed(h: dict[str, str], key: str) -> dict[str, str]:
    return {**h, "Idempotency-Key": key}


def setup(api: Api) -> dict[str, str]:
    h = api.tenant()
    api.user(h, USER)
    return h


def count(api: Api, h: dict[str, str], resource: str) -> int:
    total: int = api.client.get(f"{BASE}/{resource}", headers=h).json()["total"]
    return total


def test_a_retry_gets_the_first_response_and_writes_nothing(api: Api) -> None:
    h = setup(api)
    body = {"text": "Answer in French.", "always_on": True}
    first = api.client.post(f"{BASE}/instructions", json=body, headers=keyed(h, "k-1"))
    assert first.status_code == 201, first.text
    assert "Idempotent-Replayed" not in first.headers
    again = api.client.post(
        f"{BASE}/instructions", json=dict(reversed(body.items())), headers=keyed(h, "k-1")
    )
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert again.headers["ETag"] == first.headers["ETag"] == f'"{first.json()["id"]}:1"'
    assert count(api, h, "instructions") == 1

    other = api.client.post(f"{BASE}/instructions", json=body, headers=keyed(h, "k-2"))
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]
    plain = api.client.post(f"{BASE}/instructions", json=body, headers=h)
    assert plain.status_code == 201
    assert count(api, h, "instructions") == 3


def test_every_creating_post_honours_the_key(api: Api) -> None:
    h = setup(api)
    same = "Meeting moved to Thursday."
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        ("examples", {"prompt": "p", "chosen": "c", "rejected": "r"}, 201, "examples"),
        (
            "edits",
            {"context": "team", "draft": same, "edited": same, "applied_preference": "Be brief"},
            202,
            "edits",
        ),
        (
            "import",
            {
                "format": "tailor-export-v1",
                "instructions": [
                    {
                        "instruction_id": "0b7c6f1e-8d3a-4c55-9f55-2d0f6c1a9e11",
                        "version": 1,
                        "text": "Use metric units.",
                        "status": "active",
                    }
                ],
            },
            201,
            "instructions",
        ),
    ]
    for path, body, status, listed in cases:
        first = api.client.post(f"{BASE}/{path}", json=body, headers=keyed(h, f"key-{path}"))
        assert first.status_code == status, first.text
        before = count(api, h, listed)
        again = api.client.post(f"{BASE}/{path}", json=body, headers=keyed(h, f"key-{path}"))
        assert (again.status_code, again.json()) == (status, first.json()), path
        assert again.headers["Idempotent-Replayed"] == "true"
        assert count(api, h, listed) == before, path
    assert count(api, h, "preferences") == 1  # the edit's preference was written once

    pid = accepted_preference(api, h, "Keep team notes to one line")
    url = f"{BASE}/preferences/{pid}/promote"
    promoted = api.client.post(url, json={}, headers=keyed(h, "promote-1"))
    replayed = api.client.post(url, json={}, headers=keyed(h, "promote-1"))
    assert promoted.status_code == replayed.status_code == 200
    assert replayed.json() == promoted.json()
    assert replayed.headers["Idempotent-Replayed"] == "true"


def test_same_key_with_another_body_is_refused(api: Api) -> None:
    h = setup(api)
    first = api.client.post(f"{BASE}/instructions", json={"text": "A."}, headers=keyed(h, "k"))
    assert first.status_code == 201
    reused = api.client.post(f"{BASE}/instructions", json={"text": "B."}, headers=keyed(h, "k"))
    assert reused.status_code == 422
    assert reused.json()["error"]["code"] == "idempotency_key_reused"
    assert count(api, h, "instructions") == 1
    # the key is per path: the same key on another resource is another request
    example = {"prompt": "p", "chosen": "c", "rejected": "r"}
    assert (
        api.client.post(f"{BASE}/examples", json=example, headers=keyed(h, "k")).status_code == 201
    )
    # and per tenant
    h2 = api.tenant("other")
    api.user(h2, USER)
    mine = api.client.post(f"{BASE}/instructions", json={"text": "B."}, headers=keyed(h2, "k"))
    assert mine.status_code == 201 and "Idempotent-Replayed" not in mine.headers


def test_a_failed_request_releases_its_key(api: Api) -> None:
    h = setup(api)
    pid = accepted_preference(api, h, "Be brief")
    assert api.client.patch(
        f"{BASE}/preferences/{pid}", json={"status": "rejected"}, headers=h
    ).is_success
    url = f"{BASE}/preferences/{pid}/promote"
    refused = api.client.post(url, json={}, headers=keyed(h, "p"))
    assert refused.status_code == 422
    assert api.client.patch(
        f"{BASE}/preferences/{pid}", json={"status": "accepted"}, headers=h
    ).is_success
    retried = api.client.post(url, json={}, headers=keyed(h, "p"))
    assert retried.status_code == 200, retried.text
    assert "Idempotent-Replayed" not in retried.headers


def test_bad_keys_are_refused_by_the_schema(api: Api) -> None:
    h = setup(api)
    for key in ["", "x" * 256, "has space"]:
        response = api.client.post(
            f"{BASE}/instructions", json={"text": "A."}, headers=keyed(h, key)
        )
        assert response.status_code == 422, key
    assert count(api, h, "instructions") == 0


def test_expired_keys_are_forgotten_and_cleaned_up(api: Api) -> None:
    h = setup(api)
    body = {"text": "A."}
    first = api.client.post(f"{BASE}/instructions", json=body, headers=keyed(h, "old"))
    engine = engine_of(api)
    with Session(engine) as session:
        session.execute(
            sa.update(IdempotencyRecord).values(expires_at=utcnow() - timedelta(seconds=1))
        )
        session.commit()
    fresh = api.client.post(f"{BASE}/instructions", json=body, headers=keyed(h, "old"))
    assert fresh.status_code == 201 and "Idempotent-Replayed" not in fresh.headers
    assert fresh.json()["id"] != first.json()["id"]
    with Session(engine) as session:
        rows = session.exec(select(IdempotencyRecord)).all()
    assert len(rows) == 1 and rows[0].expires_at > utcnow() + timedelta(hours=23)


def test_deleting_the_user_deletes_its_records(api: Api) -> None:
    h = setup(api)
    api.client.post(f"{BASE}/instructions", json={"text": "Secret."}, headers=keyed(h, "k"))
    assert api.client.delete(f"/v1/users/{USER}", headers=h).status_code == 204
    with Session(engine_of(api)) as session:
        assert session.exec(select(IdempotencyRecord)).all() == []


def test_racing_retries_on_two_replicas_write_once(
    pair: Any,  # noqa: F811
) -> None:
    """Several retries of one keyed POST at once, on both replicas: one instruction;
    every answer is the first response or 409 `idempotency_key_in_use`."""
    a, b, h = pair
    barrier = threading.Barrier(6)
    answers: list[httpx.Response] = []

    def send(api: Api) -> None:
        barrier.wait()
        answers.append(
            api.client.post(
                f"{BASE}/instructions", json={"text": "Once."}, headers=keyed(h, "race")
            )
        )

    threads = [threading.Thread(target=send, args=(api,)) for api in [a, b] * 3]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    created = [r for r in answers if r.status_code == 201]
    assert created and all(r.json() == created[0].json() for r in created)
    for r in answers:
        assert r.status_code == 201 or r.json()["error"]["code"] == "idempotency_key_in_use"
    assert count(a, h, "instructions") == 1
    # after the race the key replays on either replica
    for api in (a, b):
        replay = api.client.post(
            f"{BASE}/instructions", json={"text": "Once."}, headers=keyed(h, "race")
        )
        assert replay.json() == created[0].json()


def test_openapi_documents_the_idempotency_key(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    for path in ("instructions", "examples", "edits", "import"):
        post = spec["paths"][f"/v1/users/{{user_id}}/{path}"]["post"]
        assert "Idempotency-Key" in {p["name"] for p in post["parameters"]}, path
