"""Few-shot preference examples: stored with the prompt's embedding, the nearest few
shown in the profile block, within the token budget, scoped like everything else."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import Api


def add(api: Api, h: dict[str, str], user: str, prompt: str, **kw: str) -> dict[str, Any]:
    body = {"prompt": prompt, "chosen": kw.get("chosen", "short bullets"), "rejected": "long prose"}
    response = api.client.post(f"/v1/users/{user}/examples", json=body, headers=h)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def block_lines(ctx: dict[str, Any]) -> list[dict[str, Any]]:
    content = ctx["system_message"]["content"].split("\n")
    return [json.loads(line) for line in content[2:-1]]


def test_examples_crud(api: Api) -> None:
    h = api.tenant()
    api.user(h, "alice")
    made = add(api, h, "alice", "Summarise this article about trains")
    assert made["prompt"] == "Summarise this article about trains"
    assert made["chosen"] == "short bullets"
    c = api.client
    assert c.get(f"/v1/users/alice/examples/{made['id']}", headers=h).json() == made
    assert c.get("/v1/users/alice/examples", headers=h).json()["total"] == 1
    assert c.delete(f"/v1/users/alice/examples/{made['id']}", headers=h).status_code == 204
    assert c.get(f"/v1/users/alice/examples/{made['id']}", headers=h).status_code == 404
    assert c.get("/v1/users/alice/examples", headers=h).json()["total"] == 0
    bad = c.post("/v1/users/alice/examples", json={"prompt": "x", "chosen": "y"}, headers=h)
    assert bad.status_code == 422


def test_nearest_examples_are_shown_in_the_block(api: Api) -> None:
    h = api.tenant()
    api.user(h, "alice")
    near = add(api, h, "alice", "summarise this news article", chosen="- bullet summary")
    add(api, h, "alice", "write a poem about cats")
    add(api, h, "alice", "fix my python code")
    ctx = api.context(h, "alice", "please summarise this article", examples_k=1)
    assert [e["id"] for e in ctx["examples"]] == [near["id"]]
    lines = block_lines(ctx)
    assert lines == [
        {
            "type": "preference_example",
            "prompt": "summarise this news article",
            "preferred": "- bullet summary",
            "not_preferred": "long prose",
        }
    ]
    three = api.context(h, "alice", "please summarise this article")
    assert len(three["examples"]) == 3
    assert three["examples"][0]["id"] == near["id"]
    scores = [e["score"] for e in three["examples"]]
    assert scores == sorted(scores, reverse=True)
    assert api.context(h, "alice", "summarise", examples_k=0)["examples"] == []


def test_examples_come_after_instructions_and_respect_the_budget(api: Api) -> None:
    h = api.tenant()
    api.user(h, "alice")
    api.instruction(h, "alice", text="I avoid gluten", always_on=True)
    add(api, h, "alice", "summarise this", chosen="x" * 2000)
    small = api.context(h, "alice", "summarise this", token_budget=60)
    assert small["examples"] == []  # a clipped example still costs ~330 tokens
    assert [line["type"] for line in block_lines(small)] == ["standing_instruction"]
    big = api.context(h, "alice", "summarise this", token_budget=1000)
    assert [line["type"] for line in block_lines(big)] == [
        "standing_instruction",
        "preference_example",
    ]
    assert big["token_estimate"] <= 1000
    preferred = block_lines(big)[1]["preferred"]
    assert len(preferred) == 400
    assert preferred.endswith("…")


def test_examples_are_scoped(api: Api) -> None:
    a, b = api.tenant("a"), api.tenant("b")
    api.user(a, "alice")
    api.user(b, "alice")
    made = add(api, a, "alice", "summarise this")
    assert api.client.get(f"/v1/users/alice/examples/{made['id']}", headers=b).status_code == 404
    assert api.client.delete(f"/v1/users/alice/examples/{made['id']}", headers=b).status_code == 404
    assert api.context(b, "alice", "summarise this")["examples"] == []
    assert len(api.context(a, "alice", "summarise this")["examples"]) == 1


def test_examples_survive_restart_and_rebuild(start_app: Any, tmp_path: Any) -> None:
    first = start_app()
    h = first.tenant()
    first.user(h, "alice")
    made = add(first, h, "alice", "summarise this")
    first.client.__exit__(None, None, None)
    second = start_app()
    assert [e["id"] for e in second.context(h, "alice", "summarise this")["examples"]] == [
        made["id"]
    ]
    index = second.client.app.state.ports.index  # type: ignore[attr-defined]
    index.rebuild_all()
    assert index.cache.row_count("example") == 1
