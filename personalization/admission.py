"""Admission control and per-key rate limits: refuse at once (429 with Retry-After)
instead of letting queues, and latency, grow without bound."""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence

from personalization.embedder import Embedder, Vectors
from store.errors import Overloaded


class AdmittedEmbedder:
    """At most `max_waiting` embedding calls running or queued; one more gets 429."""

    def __init__(self, embedder: Embedder, *, max_waiting: int) -> None:
        self._embedder = embedder
        self._slots = threading.BoundedSemaphore(max_waiting)

    @property
    def model_id(self) -> str:
        return self._embedder.model_id

    @property
    def dim(self) -> int:
        return self._embedder.dim

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not self._slots.acquire(blocking=False):
            raise Overloaded("the embedder is saturated; retry shortly", code="embedder_busy")
        try:
            return self._embedder.embed(texts)
        finally:
            self._slots.release()


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
