"""Admission control and lazy start in front of a model backend.

A bounded number of generations may run or wait; one more is refused at once
(`BackendBusy`, HTTP 429 with Retry-After) instead of letting latency grow without
bound. The backend is built on first use, or at start when the operator asks for it
(TAILOR_EAGER_LOAD, service/ports.py); either way its load is logged with its time."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence

from personalization.backends import (
    BackendBusy,
    Completion,
    Delta,
    GenerationSettings,
    ModelBackend,
)
from personalization.messages import ChatMessage

log = logging.getLogger("tailor.model")


class GatedBackend:
    def __init__(
        self,
        factory: Callable[[], ModelBackend],
        *,
        max_waiting: int,
        model_id: str,
        on_load: Callable[[float], None] | None = None,
    ) -> None:
        """`on_load(seconds)` hears how long the build took (for metrics)."""
        self._factory = factory
        self._backend: ModelBackend | None = None
        self._build_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max_waiting)
        self._model_id = model_id
        self.load_seconds: float | None = None
        self._on_load = on_load

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def backend(self) -> ModelBackend:
        if self._backend is None:
            with self._build_lock:
                if self._backend is None:
                    log.info("loading chat model %s", self._model_id)
                    start = time.perf_counter()
                    self._backend = self._factory()
                    self.load_seconds = time.perf_counter() - start
                    log.info("chat model %s loaded in %.1f s", self._model_id, self.load_seconds)
                    if self._on_load is not None:
                        self._on_load(self.load_seconds)
        return self._backend

    def load(self) -> None:
        """Build the backend now instead of on the first call."""
        self.backend  # noqa: B018  (the property builds it)

    @property
    def loaded(self) -> bool:
        return self._backend is not None

    def _admit(self) -> None:
        if not self._slots.acquire(blocking=False):
            raise BackendBusy("too many generations are running or waiting; retry shortly")

    def complete(self, messages: Sequence[ChatMessage], settings: GenerationSettings) -> Completion:
        self._admit()
        try:
            return self.backend.complete(messages, settings)
        finally:
            self._slots.release()

    def stream(
        self, messages: Sequence[ChatMessage], settings: GenerationSettings
    ) -> Iterator[Delta]:
        self._admit()
        try:
            yield from self.backend.stream(messages, settings)
        finally:
            self._slots.release()
