"""Time a turn spends beyond its query embedding, by profile size (items per user).

One user per size. Item keys come from the real path (`ProfileWriter.instruction_keys`:
MiniLM vectors, derived kind and domains) for a pool of distinct texts; larger profiles
reuse the pool's keys with a little noise on the vectors (so rows do not tie exactly)
and are inserted in bulk straight into SQL, then loaded by the turn's own freshness
check. The turn runs in-process through the service's ContextBuilder with the query
vectors computed up front, so what is timed is everything but the embedding. Prints
p50/p99 per size and the ratio to one bare embedding; asserts nothing.

    .venv/bin/python bench/profile_size.py --sizes 100,1000,10000 --queries 100
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient
from sqlmodel import Session

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.context_latency import QUERIES, TOPICS, percentile, ready_with_key
from personalization.context import ContextBuilder
from personalization.embedder import SentenceTransformerEmbedder, Vectors
from personalization.messages import ChatMessage
from service.app import create_app
from service.ports import Ports
from service.settings import Settings
from service.threads import apply_thread_settings
from store.changes import record_user_change
from store.instructions import InstructionEmbeddings, first_version
from store.models import InstructionSource
from store.vector_index import decode_vector, encode_vector

ADMIN = "bench-admin-token-" + "x" * 20


class PrecomputedEmbedder:
    """The bench's queries, embedded once, so a timed turn excludes the model."""

    def __init__(self, model_id: str, dim: int, vectors: dict[str, Vectors]) -> None:
        self.model_id, self.dim, self._vectors = model_id, dim, vectors

    def embed(self, texts: Sequence[str]) -> Vectors:
        return np.stack([self._vectors[t][0] for t in texts])


def noisy(blob: bytes | None, dim: int, rng: np.random.Generator) -> bytes | None:
    if blob is None:
        return None
    out = []
    for start in range(0, len(blob), dim * 4):
        v = decode_vector(blob[start : start + dim * 4], dim)
        v = v + rng.normal(scale=0.003, size=dim).astype(np.float32)
        out.append(encode_vector(v / np.linalg.norm(v)))
    return b"".join(out)


def pool_keys(ports: Ports, size: int) -> list[tuple[str, str, bool, InstructionEmbeddings]]:
    pool = []
    for i in range(size):
        topic, rule = TOPICS[i % len(TOPICS)]
        text = f"{rule} (variant {i})"
        when = f"when I ask about {topic}"
        pool.append((text, when, i % 20 == 0, ports.writer.instruction_keys(text, when)))
    return pool


def fill(ports: Ports, scope_user: object, n: int, pool: list[Any], seed: int) -> None:
    rng = np.random.default_rng(seed)
    scope = scope_user
    with Session(ports.engine) as session:
        for i in range(n):
            text, when, always, keys = pool[i % len(pool)]
            if i >= len(pool):
                dim = keys.dim
                keys = InstructionEmbeddings(
                    model=keys.model,
                    dim=dim,
                    text=noisy(keys.text, dim, rng) or b"",
                    condition=noisy(keys.condition, dim, rng),
                    applicability=keys.applicability,
                    requests=noisy(keys.requests, dim, rng),
                )
                always = False  # always-on items stay a few, as in real profiles
            row = first_version(
                scope,  # type: ignore[arg-type]
                f"{text} #{i}",
                when,
                always,
                InstructionSource.user,
                keys,
            )
            session.add(row)
            if i % 5000 == 4999:
                session.flush()
        # One change for the bulk fill, naming no item: every replica reloads the user whole.
        record_user_change(session, scope, "profile", uuid.uuid4(), "imported")  # type: ignore[arg-type]
        session.commit()


class StepTimer:
    """Wraps named calls of a turn (method or module function) and sums the time each
    takes per turn, so a slow size says where its time goes. Nested calls are timed
    inside their callers (rank_rows runs inside select)."""

    def __init__(self) -> None:
        self.totals: dict[str, list[float]] = {}
        self._turn: dict[str, float] = {}

    def wrap(self, owner: object, name: str, label: str) -> None:
        inner = getattr(owner, name)

        @functools.wraps(inner)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                spent = (time.perf_counter() - start) * 1000
                self._turn[label] = self._turn.get(label, 0.0) + spent

        setattr(owner, name, timed)

    def end_turn(self) -> None:
        for label, spent in self._turn.items():
            self.totals.setdefault(label, []).append(spent)
        self._turn = {}

    def reset(self) -> None:
        self.totals, self._turn = {}, {}

    def report(self) -> str:
        return ", ".join(
            f"{label} {statistics.median(times):.2f}" for label, times in self.totals.items()
        )


def instrument(timer: StepTimer, context: ContextBuilder, ports: Ports) -> None:
    import personalization.candidates as candidates

    candidates_of = context._candidates
    timer.wrap(ports.index, "ensure_fresh", "fresh")
    timer.wrap(candidates_of, "select", "select")
    timer.wrap(candidates_of._always_on, "rows", "always_on")
    if candidates_of._applicability is not None:
        timer.wrap(candidates_of._applicability, "turn_domains", "domains")
    for ranks in ("ranking", "rank_rows"):  # the block's ranking (by its name before)
        if hasattr(ports.index.cache, ranks):
            timer.wrap(ports.index.cache, ranks, "rank")
            break
    timer.wrap(ports.instructions, "active", "sql_rows")
    timer.wrap(candidates, "select_applicable_instructions", "policy")
    timer.wrap(context, "_nearest_examples", "examples")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="100,1000,10000", help="items per user, comma list")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--pool", type=int, default=300, help="distinct texts embedded")
    parser.add_argument("--steps", action="store_true", help="time each step (median ms)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    logging.getLogger("httpx").setLevel(logging.WARNING)
    settings = Settings(
        data_dir=Path(tempfile.mkdtemp(prefix="tailor-bench-size-")),
        admin_token=ADMIN,
        rate_limit_per_minute=0,
        snapshot_interval_s=3600,
    )
    apply_thread_settings(settings, load_torch=True)
    embedder = SentenceTransformerEmbedder()
    app = create_app(settings, embedder=embedder)
    with TestClient(app) as client:
        key = ready_with_key(client, ADMIN)
        ports: Ports = app.state.ports
        print(f"embedding a pool of {args.pool} item texts...", flush=True)
        pool = pool_keys(ports, args.pool)
        vectors = {q: embedder.embed([q]) for q in QUERIES}
        context = ContextBuilder(
            PrecomputedEmbedder(embedder.model_id, embedder.dim, vectors),
            ports.instructions,
            ports.examples,
            ports.index,
            None,
            applicability=ports.context._applicability,
        )
        options = settings.context_options()
        timer = StepTimer()
        if args.steps:
            instrument(timer, context, ports)
        bare = []
        for i in range(args.queries):
            start = time.perf_counter()
            embedder.embed([QUERIES[i % len(QUERIES)]])
            bare.append((time.perf_counter() - start) * 1000)
        embed_p50 = statistics.median(bare)
        rows = []
        for n in sizes:
            user = f"size-{n}"
            client.post("/v1/users", json={"id": user}).raise_for_status()
            scope = ports.users.resolve(ports.keys.authenticate(key), user)
            started = time.perf_counter()
            fill(ports, scope, n, pool, seed=n)
            filled = time.perf_counter() - started
            messages = [[ChatMessage("user", q)] for q in QUERIES]
            context.build(scope, messages[0], options)  # loads the user (not timed)
            # The change-log follower reloads a changed user too (the whole user, from
            # SQL); wait for it, so what is timed is the steady state.
            while ports.index.follow().changed:
                pass
            times = []
            timer.reset()
            for i in range(args.queries):
                start = time.perf_counter()
                context.build(scope, messages[i % len(messages)], options)
                times.append((time.perf_counter() - start) * 1000)
                timer.end_turn()
            rows.append((n, statistics.median(times), percentile(times, 99), filled))
            if args.steps:
                print(f"{n:>7} items, median ms per step: {timer.report()}", flush=True)
    print(f"\nload average (1 min) at the end: {os.getloadavg()[0]:.2f}")
    print(f"one bare query embedding: p50 {embed_p50:.2f} ms ({args.queries} calls)")
    print(f"{'items/user':>10}{'p50 ms':>10}{'p99 ms':>10}{'p50 / embed':>13}{'fill s':>9}")
    for n, p50, p99, filled in rows:
        print(f"{n:>10}{p50:>10.2f}{p99:>10.2f}{p50 / embed_p50:>13.2f}{filled:>9.1f}")
    print("(time beyond the query embedding, in-process; item vectors: MiniLM + noise)")


if __name__ == "__main__":
    main()
