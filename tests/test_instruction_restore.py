"""Restoring an earlier version of a standing instruction, over HTTP, on SQLite and
PostgreSQL: a new version equal to the earlier one, keyed for the restored text, under
the same If-Match rules as any update."""

from __future__ import annotations

from typing import Any

from tests.conftest import Api


def _setup(api: Api) -> tuple[dict[str, str], str, str]:
    h = api.tenant()
    api.user(h, "alice")
    made = api.instruction(
        h, "alice", text="Answer in French.", applies_when="when I write to my family"
    )
    url = f"/v1/users/alice/instructions/{made['id']}"
    changed = api.client.patch(
        url,
        json={"text": "Answer in German.", "applies_when": "", "always_on": True},
        headers=h,
    )
    assert changed.status_code == 200, changed.text
    return h, made["id"], url


def test_restore_writes_a_new_version_equal_to_the_earlier_one(api: Api) -> None:
    h, iid, url = _setup(api)
    restored = api.client.post(f"{url}/restore", json={"version": 1}, headers=h)
    assert restored.status_code == 200, restored.text
    body = restored.json()
    assert (body["version"], body["text"], body["applies_when"], body["always_on"]) == (
        3,
        "Answer in French.",
        "when I write to my family",
        False,
    )
    assert restored.headers["ETag"] == f'"{iid}:3"'
    assert api.client.get(url, headers=h).json() == body
    versions = api.client.get(f"{url}/history", headers=h).json()["versions"]
    assert [(v["version"], v["text"]) for v in versions] == [
        (1, "Answer in French."),
        (2, "Answer in German."),
        (3, "Answer in French."),
    ]
    assert [v["valid_to"] is None for v in versions] == [False, False, True]
    # The restored version's keys are the French text's: a turn about family mail
    # selects it by its condition, and what the turn returns is the restored text.
    ctx = api.context(h, "alice", "when I write to my family", whole_profile=False)
    assert [(i["id"], i["version"], i["text"]) for i in ctx["instructions"]] == [
        (iid, 3, "Answer in French.")
    ]


def test_restore_keeps_what_the_user_pinned_and_the_status(api: Api) -> None:
    h = api.tenant()
    api.user(h, "alice")
    made = api.instruction(h, "alice", text="Never suggest pork.")
    url = f"/v1/users/alice/instructions/{made['id']}"
    pinned = {"kind": "constraint", "domains": ["food"], "typical_requests": ["dinner ideas"]}
    assert api.client.patch(url, json=pinned, headers=h).status_code == 200  # v2
    auto = {"text": "Keep it light.", "kind": "auto", "domains": "auto", "status": "disabled"}
    v3 = api.client.patch(url, json=auto, headers=h).json()
    assert v3["kind_set_by"] == "derived" and v3["applicability_set_by"] == "derived"
    restored = api.client.post(f"{url}/restore", json={"version": 2}, headers=h).json()
    assert restored["version"] == 4
    assert restored["text"] == "Never suggest pork."
    assert (restored["kind"], restored["kind_set_by"]) == ("constraint", "user")
    assert (restored["domains"], restored["typical_requests"]) == (["food"], ["dinner ideas"])
    assert restored["applicability_set_by"] == "user"
    assert restored["status"] == "disabled"  # restoring wording does not switch it on


def test_restore_errors(api: Api) -> None:
    h, iid, url = _setup(api)
    c = api.client

    def error(response: Any) -> tuple[int, str]:
        return response.status_code, response.json()["error"]["code"]

    assert error(c.post(f"{url}/restore", json={"version": 7}, headers=h)) == (
        404,
        "instruction_version_not_found",
    )
    assert error(c.post(f"{url}/restore", json={"version": 2}, headers=h)) == (
        422,
        "restore_current_version",
    )
    for bad in ({"version": 0}, {}, {"version": 1, "text": "x"}, {"version": 2**31}):
        assert c.post(f"{url}/restore", json=bad, headers=h).status_code == 422
    # Another user's item is not found, like a missing one.
    api.user(h, "bob")
    other = f"/v1/users/bob/instructions/{iid}/restore"
    assert error(c.post(other, json={"version": 1}, headers=h))[0] == 404
    # Nothing was written by any of these.
    assert c.get(url, headers=h).json()["version"] == 2
    # A deleted item is not restored.
    assert c.delete(url, headers=h).status_code == 204
    assert error(c.post(f"{url}/restore", json={"version": 1}, headers=h)) == (
        404,
        "instruction_not_found",
    )


def test_restore_honours_if_match(api: Api) -> None:
    h, iid, url = _setup(api)
    c = api.client
    stale = {**h, "If-Match": f'"{iid}:1"'}
    refused = c.post(f"{url}/restore", json={"version": 1}, headers=stale)
    assert refused.status_code == 412
    assert refused.json()["error"]["code"] == "precondition_failed"
    assert c.get(url, headers=h).json()["version"] == 2
    current = {**h, "If-Match": c.get(url, headers=h).headers["ETag"]}
    done = c.post(f"{url}/restore", json={"version": 1}, headers=current)
    assert done.status_code == 200
    assert done.headers["ETag"] == f'"{iid}:3"'
    # The same ETag again is now stale: it names version 2.
    again = c.post(f"{url}/restore", json={"version": 2}, headers=current)
    assert again.status_code == 412
