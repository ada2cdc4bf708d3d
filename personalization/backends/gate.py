"""Admission control and lazy start in front of a model backend.

A bounded number of generations may run or wait; one more is refused at once
(`BackendBusy`, HTTP 429 with Retry-After) instead of letting latency grow without
bound. The backend is built on first use, so the service is ready as soon as its
index is, and a process that never chats never loads a model."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence

from personalization.backends import (
    BackendBusy,
    Completion,
    Delta,
    GenerationSettings,
    ModelBackend,
)
from personalization.messages import ChatMessage


class GatedBackend:
    def __init__(
        self, factory: Callable[[], ModelBackend], *, max_waiting: int, model_id: str
    ) -> None:
        self._factory = factory
        self._backend: ModelBackend | None = None
        self._build_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max_waiting)
        self._model_id = model_id

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def backend(self) -> ModelBackend:
        if self._backend is None:
            with self._build_lock:
                if self._backend is None:
                    self._backend = self._factory()
        return self._backend

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
