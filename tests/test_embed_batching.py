"""Micro-batching: concurrent callers share forward passes, each gets its own rows,
errors reach every caller of the failed batch, the worker survives, shutdown drains.
The admission gate in front refuses with a Retry-After drawn from the queue and the
measured throughput. The real MiniLM gives the same vectors batched as alone."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from personalization.admission import AdmittedEmbedder
from personalization.embed_batching import BatchingEmbedder
from personalization.embedder import Vectors
from store.errors import NotReady, Overloaded
from tests.fakes import HashingEmbedder


class Recording(HashingEmbedder):
    """Records the texts of every forward pass; a pass holding "block" waits for
    `release`, so tests can let a queue build up behind it; "boom" raises."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[str]] = []
        self.threads: list[str] = []  # the thread that ran each pass
        self.entered = threading.Event()
        self.release = threading.Event()

    def embed(self, texts: Sequence[str]) -> Vectors:
        self.batches.append(list(texts))
        self.threads.append(threading.current_thread().name)
        if "block" in texts:
            self.entered.set()
            self.release.wait(10)
        if "boom" in texts:
            raise RuntimeError("model exploded")
        return super().embed(texts)


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.002)


@pytest.fixture
def inner() -> Recording:
    return Recording()


@pytest.fixture
def batcher(inner: Recording) -> Iterator[BatchingEmbedder]:
    b = BatchingEmbedder(inner, max_batch=32, max_wait_s=0.0)
    yield b
    inner.release.set()
    b.close()


def queue_behind_a_blocked_pass(
    batcher: BatchingEmbedder, inner: Recording, calls: list[list[str]]
) -> tuple[ThreadPoolExecutor, list[Any]]:
    """Starts a pass that blocks, then queues `calls` behind it from other threads."""
    pool = ThreadPoolExecutor(max_workers=len(calls) + 1)
    blocked = pool.submit(batcher.embed, ["block"])
    assert inner.entered.wait(5)
    futures = [pool.submit(batcher.embed, texts) for texts in calls]
    wait_until(lambda: batcher.waiting() == len(calls))
    return pool, [blocked, *futures]


def test_concurrent_callers_share_one_pass_and_get_their_own_rows(
    batcher: BatchingEmbedder, inner: Recording
) -> None:
    calls = [["tea with lemon"], ["green curry", "jazz records"], ["kyoto trip"], ["a b c"]]
    pool, futures = queue_behind_a_blocked_pass(batcher, inner, calls)
    inner.release.set()
    results = [f.result(5) for f in futures[1:]]
    pool.shutdown()
    assert len(inner.batches) == 2
    assert sorted(inner.batches[1]) == sorted(t for c in calls for t in c)  # one pass, 5 texts
    reference = HashingEmbedder()
    for texts, vectors in zip(calls, results, strict=True):
        assert vectors.shape == (len(texts), 64)
        np.testing.assert_array_equal(vectors, reference.embed(texts))
    assert list(batcher.batch_sizes) == [1, 5]
    rate = batcher.sentences_per_second()
    assert rate is not None and rate > 0


def test_a_batch_holds_at_most_max_batch_texts(inner: Recording) -> None:
    batcher = BatchingEmbedder(inner, max_batch=3, max_wait_s=0.0)
    calls = [[f"text {i}"] for i in range(7)]
    pool, futures = queue_behind_a_blocked_pass(batcher, inner, calls)
    inner.release.set()
    for f in futures:
        f.result(5)
    pool.shutdown()
    batcher.close()
    assert [len(b) for b in inner.batches] == [1, 3, 3, 1]


def test_a_call_larger_than_the_batch_runs_alone(inner: Recording) -> None:
    batcher = BatchingEmbedder(inner, max_batch=2, max_wait_s=0.0)
    vectors = batcher.embed([f"t{i}" for i in range(5)])
    batcher.close()
    assert vectors.shape == (5, 64)
    assert [len(b) for b in inner.batches] == [5]


def test_the_worker_lingers_for_company_only_under_load(inner: Recording) -> None:
    """After a batch of several calls, a lone arrival waits up to max_wait for others;
    after a lone call, it does not (the lone call returns well within max_wait)."""
    batcher = BatchingEmbedder(inner, max_batch=32, max_wait_s=2.0)
    start = time.perf_counter()
    batcher.embed(["alone"])
    assert time.perf_counter() - start < 1.0
    assert inner.threads == [threading.current_thread().name]  # idle: ran in the caller
    pool, futures = queue_behind_a_blocked_pass(batcher, inner, [["x"], ["y"]])
    inner.release.set()
    for f in futures:
        f.result(5)
    assert sorted(inner.batches[-1]) == ["x", "y"]
    first = pool.submit(batcher.embed, ["first"])
    time.sleep(0.05)
    second = pool.submit(batcher.embed, ["second"])
    first.result(5)
    second.result(5)
    pool.shutdown()
    batcher.close()
    assert sorted(inner.batches[-1]) == ["first", "second"]
    assert inner.threads[-2:] == ["tailor-embed", "tailor-embed"]  # the worker's passes


def test_an_error_reaches_every_caller_of_the_batch_and_the_worker_survives(
    batcher: BatchingEmbedder, inner: Recording
) -> None:
    pool, futures = queue_behind_a_blocked_pass(batcher, inner, [["boom"], ["innocent"]])
    inner.release.set()
    futures[0].result(5)  # the blocked pass itself was fine
    for f in futures[1:]:
        with pytest.raises(RuntimeError, match="model exploded"):
            f.result(5)
    pool.shutdown()
    assert batcher.embed(["after the failure"]).shape == (1, 64)


def test_close_finishes_queued_calls_then_refuses(
    batcher: BatchingEmbedder, inner: Recording
) -> None:
    pool, futures = queue_behind_a_blocked_pass(batcher, inner, [["queued one"], ["queued two"]])
    closer = threading.Thread(target=batcher.close)
    closer.start()
    inner.release.set()
    closer.join(5)
    assert [f.result(5).shape for f in futures] == [(1, 64)] * 3
    pool.shutdown()
    assert not batcher._worker.is_alive()
    with pytest.raises(NotReady) as info:
        batcher.embed(["too late"])
    assert info.value.code == "embedder_closed"


def test_empty_input_never_reaches_the_model(batcher: BatchingEmbedder, inner: Recording) -> None:
    assert batcher.embed([]).shape == (0, 64)
    assert inner.batches == []


def test_full_queue_is_refused_with_a_retry_after_from_depth_and_throughput(
    inner: Recording,
) -> None:
    batcher = BatchingEmbedder(inner, max_batch=32, max_wait_s=0.0)
    rate = {"value": None}
    gated = AdmittedEmbedder(batcher, max_waiting=3, throughput=lambda: rate["value"])
    pool = ThreadPoolExecutor(max_workers=4)
    futures = [pool.submit(gated.embed, ["block"])]
    assert inner.entered.wait(5)
    futures += [pool.submit(gated.embed, [f"w{i}" for i in range(40)]) for i in range(2)]
    wait_until(lambda: batcher.waiting() == 2)
    with pytest.raises(Overloaded) as info:  # 81 texts in flight, no rate measured yet
        gated.embed(["one more"])
    assert (info.value.code, info.value.retry_after) == ("embedder_busy", 1)
    rate["value"] = 20.0  # texts/s: 81 texts drain in 4.05 s
    with pytest.raises(Overloaded) as info:
        gated.embed(["one more"])
    assert info.value.retry_after == 5
    inner.release.set()
    for f in futures:
        f.result(5)
    pool.shutdown()
    assert gated.embed(["room again"]).shape == (1, 64)
    batcher.close()


@pytest.mark.slow
def test_real_minilm_gives_the_same_vectors_batched_as_alone() -> None:
    from personalization.embedder import SentenceTransformerEmbedder

    model = SentenceTransformerEmbedder()
    texts = [
        "hi",
        "Plan three days in Kyoto for me, with temples and a tea ceremony.",
        "Write a function that merges two sorted lists.",
        "Is it bad to drink coffee every day?",
        "Formal tone, sign as Sam. " * 12,
        "jazz",
        "Where should I put 5000 euros?",
        "Recommend a novel for the flight.",
    ]
    alone = np.vstack([model.embed([t]) for t in texts])
    entered, gate = threading.Event(), threading.Event()

    class Gated:
        model_id, dim = model.model_id, model.dim

        def embed(self, batch: Sequence[str]) -> Vectors:
            entered.set()
            gate.wait(10)
            return model.embed(batch)

    batcher = BatchingEmbedder(Gated(), max_batch=32, max_wait_s=0.0)
    with ThreadPoolExecutor(max_workers=len(texts)) as pool:
        futures = [pool.submit(batcher.embed, [texts[0]])]
        assert entered.wait(10)
        futures += [pool.submit(batcher.embed, [t]) for t in texts[1:]]
        wait_until(lambda: batcher.waiting() == len(texts) - 1)
        gate.set()
        batched = np.vstack([f.result(30) for f in futures])
    batcher.close()
    assert list(batcher.batch_sizes) == [1, len(texts) - 1]  # the rest shared one pass
    np.testing.assert_allclose(batched, alone, atol=1e-5, rtol=0)


def test_concurrent_turns_over_http_share_a_pass_and_score_as_alone(start_app: Any) -> None:
    """Turns queued behind a blocked pass share the next one, and each turn's scores
    are those it gets alone afterwards: no caller received another's vector."""
    inner = Recording()
    api = start_app(embedder=inner, embed_batch_wait_ms=0)
    h = api.tenant()
    turns = {
        "alice": "a dinner recipe with lentils tonight",
        "bob": "a python function that merges sorted lists",
        "carol": "three days of temples in kyoto",
    }
    for user in turns:
        api.user(h, user)
        api.instruction(h, user, text="Give quantities in grams", applies_when="recipes dinner")
        api.instruction(h, user, text="Add type hints", applies_when="python function code")
        api.instruction(h, user, text="One stop per line", applies_when="trip kyoto temples")
    batcher = api.client.app.state.ports.embed_batcher

    def scores(user: str) -> list[tuple[str, float, str]]:
        body = api.context(h, user, turns[user])
        return [(i["text"], i["score"], i["reason"]) for i in body["instructions"]]

    with ThreadPoolExecutor(max_workers=4) as pool:
        blocked = pool.submit(api.context, h, "alice", "block")
        assert inner.entered.wait(5)
        futures = {user: pool.submit(scores, user) for user in turns}
        wait_until(lambda: batcher.waiting() == len(turns))
        inner.release.set()
        together = {user: f.result(10) for user, f in futures.items()}
        blocked.result(10)
    assert sorted(inner.batches[-1]) == sorted(turns.values())  # one pass for the three
    alone = {user: scores(user) for user in turns}
    assert together == alone
    assert all(together[user] for user in turns)  # each turn selected something
