"""A /context turn crosses to a worker thread once: the turn's own work runs in one
threadpool call (service/routes/context.py), and nothing on the way there (app-wide
dependencies included) adds a hand-off of its own. Each hand-off is a thread wake-up
and a return to the event loop, which a busy machine makes slow."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio.to_thread
import pytest

from tests.conftest import Api


def _count_threadpool_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = anyio.to_thread.run_sync

    async def counting(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        calls.append(repr(func))
        return await real(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counting)
    return calls


def test_a_turn_makes_one_threadpool_call(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    key = api.tenant()
    api.user(key, "alice")
    api.instruction(key, "alice", text="Give quantities in grams", applies_when="cooking")
    api.context(key, "alice", "a recipe for dinner")  # the key is cached from here on
    calls = _count_threadpool_calls(monkeypatch)

    answer = api.context(key, "alice", "a recipe for dinner")

    assert [i["text"] for i in answer["instructions"]] == ["Give quantities in grams"]
    assert len(calls) == 1, calls
    assert "turn_context" in calls[0]


def test_unknown_query_parameter_is_still_refused(api: Api) -> None:
    key = api.tenant()
    api.user(key, "alice")
    response = api.client.post(
        "/v1/users/alice/context?top_k=3",
        json={"messages": [{"role": "user", "content": "hi"}]},
        headers=key,
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "unknown_query_parameter"
    assert "'top_k'" in response.json()["error"]["message"]
