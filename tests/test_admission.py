"""Overload is refused at once with 429 and Retry-After: per-key rate limits, and a
bounded number of embedding calls in flight."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from typing import Any

import pytest

from personalization.admission import AdmittedEmbedder, KeyRateLimiter
from store.errors import Overloaded
from tests.fakes import HashingEmbedder


def test_token_bucket_refills_at_the_configured_rate() -> None:
    limiter = KeyRateLimiter(60)  # one a second, bursts of 60
    key, other = uuid.uuid4(), uuid.uuid4()
    for _ in range(60):
        limiter.check(key, now=0.0)
    with pytest.raises(Overloaded) as info:
        limiter.check(key, now=0.0)
    assert (info.value.code, info.value.retry_after) == ("rate_limited", 1)
    limiter.check(other, now=0.0)  # another key is unaffected
    limiter.check(key, now=1.0)  # one token back after a second
    with pytest.raises(Overloaded):
        limiter.check(key, now=1.5)


def test_rate_limit_over_http(start_app: Any) -> None:
    api = start_app(rate_limit_per_minute=5)
    admin_made = api.tenant()  # the admin route is not rate limited by key
    statuses = [api.client.get("/v1/users", headers=admin_made).status_code for _ in range(7)]
    assert statuses == [200] * 5 + [429, 429]
    limited = api.client.get("/v1/users", headers=admin_made)
    assert limited.json()["error"]["code"] == "rate_limited"
    assert int(limited.headers["retry-after"]) >= 1
    other = api.tenant("other")
    assert api.client.get("/v1/users", headers=other).status_code == 200


class Blocking(HashingEmbedder):
    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def embed(self, texts: Sequence[str]) -> Any:
        if texts and texts[0] == "block":
            self.entered.set()
            self.release.wait(10)
        return super().embed(texts)


def test_embedder_admission_refuses_when_saturated() -> None:
    inner = Blocking()
    gated = AdmittedEmbedder(inner, max_waiting=1)
    worker = threading.Thread(target=gated.embed, args=(["block"],))
    worker.start()
    assert inner.entered.wait(5)
    with pytest.raises(Overloaded) as info:
        gated.embed(["another"])
    assert info.value.code == "embedder_busy"
    inner.release.set()
    worker.join(5)
    assert gated.embed(["now fine"]).shape == (1, 64)
    assert (gated.model_id, gated.dim) == (inner.model_id, 64)


def test_saturated_embedder_is_a_429_over_http(start_app: Any) -> None:
    inner = Blocking()
    api = start_app(embedder=inner, embed_max_waiting=1)
    h = api.tenant()
    api.user(h, "alice")
    blocked = threading.Thread(
        target=api.client.post,
        args=("/v1/users/alice/context",),
        kwargs={"json": {"messages": [{"role": "user", "content": "block"}]}, "headers": h},
    )
    blocked.start()
    assert inner.entered.wait(5)
    response = api.client.post(
        "/v1/users/alice/context", json={"messages": [{"role": "user", "content": "hi"}]}, headers=h
    )
    inner.release.set()
    blocked.join(10)
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "embedder_busy"
    assert int(response.headers["retry-after"]) >= 1  # queue depth over throughput
