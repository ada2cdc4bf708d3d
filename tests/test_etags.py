"""ETag / If-Match on versioned items, over HTTP, on SQLite and PostgreSQL: reads and
writes carry the version's tag; a write conditioned on a stale tag answers 412 and
changes nothing; `*` and no header keep the unconditional behaviour."""

from __future__ import annotations

from typing import Any

from tests.conftest import Api
from tests.test_concurrent_writes import BASE, USER, accepted_preference


def setup(api: Api) -> tuple[dict[str, str], dict[str, Any]]:
    h = api.tenant()
    api.user(h, USER)
    return h, api.instruction(h, USER, text="Answer in French.")


def test_reads_and_writes_carry_the_version_tag(api: Api) -> None:
    h, created = setup(api)
    iid = created["id"]
    url = f"{BASE}/instructions/{iid}"
    made = api.client.post(f"{BASE}/instructions", json={"text": "Be brief."}, headers=h)
    assert made.headers["ETag"] == f'"{made.json()["id"]}:1"'
    got = api.client.get(url, headers=h)
    assert got.headers["ETag"] == f'"{iid}:1"'
    patched = api.client.patch(
        url, json={"always_on": True}, headers={**h, "If-Match": got.headers["ETag"]}
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["version"] == 2
    assert patched.headers["ETag"] == f'"{iid}:2"'
    assert api.client.get(url, headers=h).headers["ETag"] == f'"{iid}:2"'


def test_stale_if_match_answers_412_and_changes_nothing(api: Api) -> None:
    h, created = setup(api)
    iid = created["id"]
    url = f"{BASE}/instructions/{iid}"
    stale = api.client.get(url, headers=h).headers["ETag"]
    assert api.client.patch(url, json={"text": "Answer in German."}, headers=h).status_code == 200

    refused = api.client.patch(
        url, json={"text": "Answer in Dutch."}, headers={**h, "If-Match": stale}
    )
    assert refused.status_code == 412
    error = refused.json()["error"]
    assert error["code"] == "precondition_failed"
    assert "version 2" in error["message"]
    deleted = api.client.delete(url, headers={**h, "If-Match": stale})
    assert deleted.status_code == 412
    current = api.client.get(url, headers=h).json()
    assert (current["version"], current["text"]) == (2, "Answer in German.")

    # another item's tag never matches; a list matches if one of its tags does
    other = api.instruction(h, USER, text="Be brief.")
    foreign = f'"{other["id"]}:2"'
    assert api.client.delete(url, headers={**h, "If-Match": foreign}).status_code == 412
    fresh = api.client.get(url, headers=h).headers["ETag"]
    listed = api.client.delete(url, headers={**h, "If-Match": f"{stale}, W/{fresh}"})
    assert listed.status_code == 204
    assert api.client.get(url, headers=h).status_code == 404


def test_star_and_absent_if_match_are_unconditional(api: Api) -> None:
    h, created = setup(api)
    url = f"{BASE}/instructions/{created['id']}"
    star = api.client.patch(url, json={"always_on": True}, headers={**h, "If-Match": "*"})
    assert star.status_code == 200 and star.json()["version"] == 2
    assert api.client.patch(url, json={"always_on": False}, headers=h).json()["version"] == 3
    assert api.client.delete(url, headers={**h, "If-Match": "*"}).status_code == 204
    missing = api.client.delete(url, headers={**h, "If-Match": "*"})
    assert missing.status_code == 404


def test_preferences_carry_tags_and_honour_if_match(api: Api) -> None:
    h = api.tenant()
    api.user(h, USER)
    pid = accepted_preference(api, h, "Keep team notes to one line")
    url = f"{BASE}/preferences/{pid}"
    got = api.client.get(url, headers=h)
    assert got.headers["ETag"] == f'"{pid}:1"'
    reworded = api.client.patch(
        url, json={"text": "Keep notes short"}, headers={**h, "If-Match": got.headers["ETag"]}
    )
    assert reworded.status_code == 200, reworded.text
    assert reworded.headers["ETag"] == f'"{pid}:2"'

    stale = {**h, "If-Match": got.headers["ETag"]}
    refused = api.client.patch(url, json={"status": "rejected"}, headers=stale)
    assert refused.status_code == 412
    assert refused.json()["error"]["code"] == "precondition_failed"
    not_promoted = api.client.post(f"{url}/promote", json={}, headers=stale)
    assert not_promoted.status_code == 412
    assert api.client.get(url, headers=h).json()["status"] == "accepted"
    assert api.client.get(f"{BASE}/instructions", headers=h).json()["total"] == 0

    promoted = api.client.post(
        f"{url}/promote", json={}, headers={**h, "If-Match": reworded.headers["ETag"]}
    )
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["instruction"]["text"] == "Keep notes short"
    assert promoted.headers["ETag"] == f'"{pid}:3"'


def test_openapi_documents_etag_and_if_match(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    item = spec["paths"]["/v1/users/{user_id}/instructions/{instruction_id}"]
    assert "ETag" in item["get"]["responses"]["200"]["headers"]
    for method in ("patch", "delete"):
        names = {p["name"] for p in item[method]["parameters"] if p["in"] == "header"}
        assert "If-Match" in names
        assert {"409", "412"} <= set(item[method]["responses"])
    preference = spec["paths"]["/v1/users/{user_id}/preferences/{preference_id}"]
    assert "ETag" in preference["get"]["responses"]["200"]["headers"]
    assert "If-Match" in {p["name"] for p in preference["patch"]["parameters"]}
