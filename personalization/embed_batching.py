"""Micro-batching in front of the embedder: one worker thread runs every forward pass.

A MiniLM forward pass over 32 short texts costs about three single calls, so 32
concurrent turns that each embed their own query waste most of the model. Callers
hand their texts to one worker and block on a future; the worker takes everything
waiting at that moment (up to `max_batch` texts), runs ONE forward pass and gives each
caller its own rows. Under load, batches form by themselves while the previous pass
runs; `max_wait_s` lets the worker linger a few milliseconds for company, but only
when the previous batch had company, so a lone caller never pays for it. A caller
that finds the model idle and no sign of load runs its pass in its own thread; one
pass runs at a time either way."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from personalization.embedder import Embedder, Vectors
from store.errors import NotReady

log = logging.getLogger("tailor.embedder")

# Weight of the newest batch in the throughput estimate (an exponential moving average).
_RATE_SMOOTHING = 0.2


@dataclass(slots=True)
class _Request:
    texts: list[str]
    future: Future[Vectors] = field(default_factory=Future)


class BatchingEmbedder:
    """An `Embedder` whose calls from many threads share forward passes."""

    def __init__(
        self,
        embedder: Embedder,
        *,
        max_batch: int = 32,
        max_wait_s: float = 0.002,
        on_batch: Callable[[int, float], None] | None = None,
    ):
        """`on_batch(texts, seconds)` hears of every pass that succeeded (for metrics)."""
        if max_batch < 1 or max_wait_s < 0:
            raise ValueError("max_batch must be >= 1 and max_wait_s >= 0")
        self._inner = embedder
        self._max_batch = max_batch
        self._max_wait_s = max_wait_s
        self._queue: deque[_Request] = deque()
        self._wakeup = threading.Condition()
        self._closed = False
        self._busy = False  # a pass is running (in the worker or in a caller's thread)
        self._last_batch_calls = 0
        self._rate: float | None = None
        self._on_batch = on_batch
        self.batch_sizes: deque[int] = deque(maxlen=1024)  # texts per pass, newest last
        self._worker = threading.Thread(target=self._run, name="tailor-embed", daemon=True)
        self._worker.start()

    @property
    def model_id(self) -> str:
        return self._inner.model_id

    @property
    def dim(self) -> int:
        return self._inner.dim

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        request = _Request(list(texts))
        with self._wakeup:
            if self._closed:
                raise NotReady("the embedder is shutting down", code="embedder_closed")
            # Idle, and no sign of load: run the pass in the caller's own thread, which
            # spares two thread hand-offs (each a scheduler wait on a busy machine).
            inline = not self._busy and not self._queue and self._last_batch_calls <= 1
            if inline:
                self._busy = True
                self._last_batch_calls = 1
            else:
                self._queue.append(request)
                self._wakeup.notify_all()
        if inline:
            try:
                self._compute([request])
            finally:
                self._release()
        return request.future.result()

    def waiting(self) -> int:
        """Calls queued and not yet taken into a batch."""
        with self._wakeup:
            return len(self._queue)

    def sentences_per_second(self) -> float | None:
        """Texts per second while the model computes (smoothed over recent batches);
        None until the first batch. What a queue of waiting texts drains at."""
        return self._rate

    def close(self, timeout_s: float = 10.0) -> None:
        """Refuse new calls, finish the ones already queued, stop the worker."""
        with self._wakeup:
            self._closed = True
            self._wakeup.notify_all()
        self._worker.join(timeout_s)

    def _release(self) -> None:
        with self._wakeup:
            self._busy = False
            self._wakeup.notify_all()

    def _run(self) -> None:
        while (batch := self._collect()) is not None:
            try:
                self._compute(batch)
            finally:
                self._release()

    def _collect(self) -> list[_Request] | None:
        """The next batch, once no pass is running; None when closed and drained."""
        with self._wakeup:
            while self._busy or not self._queue:
                if self._closed and not self._queue:
                    return None
                self._wakeup.wait()
            self._busy = True
            batch = [self._queue.popleft()]
            size = len(batch[0].texts)
            linger = self._max_wait_s if self._last_batch_calls > 1 and not self._closed else 0.0
            deadline = time.monotonic() + linger
            while size < self._max_batch:
                if self._queue:
                    if size + len(self._queue[0].texts) > self._max_batch:
                        break
                    request = self._queue.popleft()
                    batch.append(request)
                    size += len(request.texts)
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    break
                self._wakeup.wait(remaining)
            self._last_batch_calls = len(batch)
            return batch

    def _compute(self, batch: list[_Request]) -> None:
        texts = [text for request in batch for text in request.texts]
        start = time.perf_counter()
        try:
            vectors = self._inner.embed(texts)
            if vectors.shape[0] != len(texts):
                raise RuntimeError(f"embedder returned {vectors.shape[0]} rows for {len(texts)}")
        except BaseException as exc:  # every caller hears of it; the worker carries on
            for request in batch:
                request.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            log.warning("embedding batch of %d texts failed: %r", len(texts), exc)
            return
        elapsed = time.perf_counter() - start
        self.batch_sizes.append(len(texts))
        if self._on_batch is not None:
            self._on_batch(len(texts), elapsed)
        if elapsed > 0:
            rate = len(texts) / elapsed
            previous = self._rate
            self._rate = (
                rate if previous is None else previous + _RATE_SMOOTHING * (rate - previous)
            )
        offset = 0
        for request in batch:
            count = len(request.texts)
            request.future.set_result(vectors[offset : offset + count])
            offset += count
