"""Every Prometheus metric Tailor exports, defined in one place, and the few adapters that
record them from the existing code paths.

Two kinds of figures, with different truths:

- **Per-process** counters and histograms (requests, latencies, embedding passes, profile
  size per turn, model calls). Each replica (each process) counts what it served; scrape
  every replica and `sum()` across them. They live in this module's own registry, so a
  test that builds several apps in one process sees one set that keeps counting.
- **Shared** state read at scrape time from the database (the edit queue) or from this
  replica's memory (its vector index). The queue figures are the same on every replica
  because the database is the one truth: aggregate them with `max()`, never `sum()`.

Labels never carry a raw path, a user id, a tenant id or profile text: routes appear as
their templates (`/v1/users/{user_id}/context`)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError

from personalization.backends import Completion, Delta, GenerationSettings, ModelBackend
from personalization.context import TurnContext
from personalization.messages import ChatMessage
from personalization.provenance import TurnRecorder, used_items
from store.clock import utcnow
from store.errors import TailorError
from store.index_manager import IndexState
from store.scope import UserScope

if TYPE_CHECKING:
    from service.ports import Ports

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

HTTP_REQUESTS = Counter(
    "tailor_http_requests",
    "HTTP requests answered by this process, by method, route template and status.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_DURATION = Histogram(
    "tailor_http_request_duration_seconds",
    "Time from a request's arrival to the last byte of its answer (a stream's whole length).",
    ["method", "route"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
EMBED_DURATION = Histogram(
    "tailor_embed_batch_duration_seconds",
    "Time of one embedder forward pass (a micro-batch of texts).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    registry=REGISTRY,
)
EMBED_BATCH_SIZE = Histogram(
    "tailor_embed_batch_size",
    "Texts in one embedder forward pass.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
    registry=REGISTRY,
)
TURN_PROFILE_ITEMS = Histogram(
    "tailor_turn_profile_items",
    "Profile items (instructions, examples, inferred preferences) used by one turn.",
    ["endpoint"],
    buckets=(0, 1, 2, 3, 5, 8, 13, 20, 30, 50),
    registry=REGISTRY,
)
TURN_PROFILE_TOKENS = Histogram(
    "tailor_turn_profile_tokens",
    "Approximate tokens of profile one turn adds to the model's context.",
    ["endpoint"],
    buckets=(0, 25, 50, 100, 200, 400, 600, 1000, 2000, 4000, 8000),
    registry=REGISTRY,
)
MODEL_DURATION = Histogram(
    "tailor_model_request_duration_seconds",
    "Time of one call to the model backend (a stream's whole length), errors included.",
    ["operation"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0),
    registry=REGISTRY,
)
MODEL_ERRORS = Counter(
    "tailor_model_errors",
    "Failed calls to the model backend, by operation and error code.",
    ["operation", "code"],
    registry=REGISTRY,
)
MODEL_LOAD_SECONDS = Gauge(
    "tailor_model_load_seconds",
    "How long this process took to load a model (component: embedder or chat).",
    ["component"],
    registry=REGISTRY,
)


def observe_embed_batch(size: int, seconds: float) -> None:
    EMBED_BATCH_SIZE.observe(size)
    EMBED_DURATION.observe(seconds)


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    HTTP_DURATION.labels(method, route).observe(seconds)


def _error_code(exc: BaseException) -> str:
    return exc.code if isinstance(exc, TailorError) else type(exc).__name__


class ObservedBackend:
    """A `ModelBackend` that times every call and counts its failures. Wraps whatever the
    app was given (the gated embedded model, a remote server, a test fake), so chat,
    edit inference and aggregation are all measured."""

    def __init__(self, inner: ModelBackend) -> None:
        self.inner = inner

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    def complete(self, messages: Sequence[ChatMessage], settings: GenerationSettings) -> Completion:
        start = time.perf_counter()
        try:
            return self.inner.complete(messages, settings)
        except BaseException as exc:
            MODEL_ERRORS.labels("complete", _error_code(exc)).inc()
            raise
        finally:
            MODEL_DURATION.labels("complete").observe(time.perf_counter() - start)

    def stream(
        self, messages: Sequence[ChatMessage], settings: GenerationSettings
    ) -> Iterator[Delta]:
        start = time.perf_counter()
        try:
            yield from self.inner.stream(messages, settings)
        except GeneratorExit:  # the client went away: not the model's failure
            raise
        except BaseException as exc:
            MODEL_ERRORS.labels("stream", _error_code(exc)).inc()
            raise
        finally:
            MODEL_DURATION.labels("stream").observe(time.perf_counter() - start)


class ObservedTurnRecorder(TurnRecorder):
    """Every /context and chat turn passes through the recorder (after its answer went
    out), so it is the one place to measure the profile a turn carried."""

    def record(self, scope: UserScope, endpoint: str, turn: TurnContext) -> None:
        TURN_PROFILE_ITEMS.labels(endpoint).observe(len(used_items(turn)))
        TURN_PROFILE_TOKENS.labels(endpoint).observe(turn.tokens)
        super().record(scope, endpoint, turn)


_COLLECTIONS = ("instruction", "example", "edit")


class ScrapeCollector(Collector):
    """State read when Prometheus scrapes: the edit queue from the database (the shared
    truth across replicas) and this replica's index and readiness."""

    def __init__(self, ports: Ports) -> None:
        self._ports = ports

    def collect(self) -> Iterable[Metric]:
        yield from self._queue()
        index = self._ports.index
        state = GaugeMetricFamily(
            "tailor_index_state", "1 for this replica's vector index state.", labels=["state"]
        )
        for value in IndexState:
            state.add_metric([value.value], 1.0 if index.state == value else 0.0)
        yield state
        vectors = GaugeMetricFamily(
            "tailor_index_vectors",
            "Vectors in this replica's in-memory index, by collection.",
            labels=["collection"],
        )
        for collection in _COLLECTIONS:
            vectors.add_metric([collection], float(index.cache.count(collection)))
        yield vectors
        loaded = GaugeMetricFamily(
            "tailor_chat_model_loaded", "1 once this process has loaded its chat model."
        )
        loaded.add_metric([], 1.0 if self._ports.chat_model_loaded() else 0.0)
        yield loaded
        waits = CounterMetricFamily(
            "tailor_worker_lock_waits",
            "Background worker steps that gave up waiting for a database lock another "
            "transaction held (retried; logged at WARNING), by worker; this process's count.",
            labels=["worker"],
        )
        waits.add_metric(["edit"], float(self._ports.worker.lock_waits))
        waits.add_metric(["capture"], float(self._ports.capture_worker.lock_waits))
        yield waits

    def _queue(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "tailor_database_up", "1 when the scrape could read the edit queue from the database."
        )
        try:
            counts, oldest = self._ports.edits.queue_stats()
        except SQLAlchemyError:
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        depth = GaugeMetricFamily(
            "tailor_edit_queue_depth",
            "Edits waiting for preference inference (all tenants), by status; from the database.",
            labels=["status"],
        )
        for status in ("pending", "running"):
            depth.add_metric([status], float(counts.get(status, 0)))
        yield depth
        age = GaugeMetricFamily(
            "tailor_edit_queue_oldest_age_seconds",
            "Age of the oldest edit still pending or running (0 when none); from the database.",
        )
        age.add_metric([], _age_s(oldest))
        yield age


def _age_s(oldest: datetime | None) -> float:
    return max(0.0, (utcnow() - oldest).total_seconds()) if oldest is not None else 0.0


def render(ports: Ports) -> bytes:
    """The exposition text: this process's counters, then the state read now."""
    scrape = CollectorRegistry(auto_describe=False)
    scrape.register(ScrapeCollector(ports))
    return generate_latest(REGISTRY) + generate_latest(scrape)
