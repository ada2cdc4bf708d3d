"""Admission control and per-key rate limits: refuse at once (429 with Retry-After)
instead of letting queues, and latency, grow without bound."""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence

from personalization.embedder import Embedder, Vectors
from store.errors import Overloaded


class AdmittedEmbedder:
    """At most `max_waiting` embedding calls running or queued; one more gets 429
    `embedder_busy` with a Retry-After of the time the queue takes to drain: the texts
    in flight over `throughput` (texts/s, measured by the batcher), at least 1 s."""

    def __init__(
        self,
        embedder: Embedder,
        *,
        max_waiting: int,
        throughput: Callable[[], float | None] | None = None,
    ) -> None:
        self._embedder = embedder
        self._max_waiting = max_waiting
        self._throughput = throughput
        self._lock = threading.Lock()
        self._calls = 0
        self._texts = 0

    @property
    def model_id(self) -> str:
        return self._embedder.model_id

    @property
    def dim(self) -> int:
        return self._embedder.dim

    def embed(self, texts: Sequence[str]) -> Vectors:
        count = len(texts)
        with self._lock:
            if self._calls >= self._max_waiting:
                raise Overloaded(
                    "the embedder is saturated; retry shortly",
                    code="embedder_busy",
                    retry_after=self._drain_seconds(self._texts),
                )
            self._calls += 1
            self._texts += count
        try:
            return self._embedder.embed(texts)
        finally:
            with self._lock:
                self._calls -= 1
                self._texts -= count

    def _drain_seconds(self, texts: int) -> int:
        rate = self._throughput() if self._throughput is not None else None
        if not rate or rate <= 0:
            return 1
        return max(1, math.ceil(texts / rate))


class KeyRateLimiter:
    """A token bucket per API key: `per_minute` requests on average, bursts up to the
    same number. Held in memory per process (a replica limits its own share)."""

    def __init__(self, per_minute: int, *, max_keys: int = 100_000) -> None:
        self._rate = per_minute / 60.0
        self._burst = float(per_minute)
        self._buckets: OrderedDict[uuid.UUID, tuple[float, float]] = OrderedDict()
        self._max_keys = max_keys
        self._lock = threading.Lock()

    def check(self, key_id: uuid.UUID, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, stamp = self._buckets.pop(key_id, (self._burst, now))
            tokens = min(self._burst, tokens + (now - stamp) * self._rate)
            if tokens < 1.0:
                self._buckets[key_id] = (tokens, now)
                wait = math.ceil((1.0 - tokens) / self._rate)
                raise Overloaded(
                    "rate limit for this API key exceeded", code="rate_limited", retry_after=wait
                )
            self._buckets[key_id] = (tokens - 1.0, now)
            while len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
