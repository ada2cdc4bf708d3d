"""Longest stall of a search while a snapshot is written, and start-up from it.

Fills a vector cache with random unit vectors (no model: the fill is synthetic, the
code timed is the service's), then, while one thread searches one user's block in a
loop, writes a snapshot twice: as the service did before (every vector turned into an
object while the cache lock was held) and as it does now (`VectorCache.capture`: views
in O(blocks) under the lock, encoding outside it). Prints the longest search latency
during each write, the write's duration, then the time to read the snapshot back and
load it, and the process's peak RSS. Asserts nothing.

    .venv/bin/python bench/snapshot_stall.py --users 1000 --per-user 200
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from store.snapshot import read_snapshot_arrays, write_snapshot
from store.vector_index import Entry, VectorCache

DIM = 384


def fill(users: int, per_user: int) -> tuple[VectorCache, uuid.UUID]:
    cache = VectorCache(DIM)
    rng = np.random.default_rng(0)
    first = uuid.uuid4()
    for u in range(users):
        user = first if u == 0 else uuid.uuid4()
        block = rng.normal(size=(per_user, DIM)).astype(np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        cache.load(Entry(user, "instruction", uuid.uuid4(), 0, v) for v in block)
    return cache, first


def stall_during(write: Callable[[], None], search: Callable[[], None]) -> tuple[float, float]:
    """(longest search ms while `write` runs, the write's seconds)."""
    done = threading.Event()
    longest = [0.0]

    def loop() -> None:
        while not done.is_set():
            start = time.perf_counter()
            search()
            longest[0] = max(longest[0], time.perf_counter() - start)
            time.sleep(0.001)

    thread = threading.Thread(target=loop)
    thread.start()
    time.sleep(0.2)
    longest[0] = 0.0
    started = time.perf_counter()
    write()
    took = time.perf_counter() - started
    done.set()
    thread.join()
    return longest[0] * 1000, took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--per-user", type=int, default=200)
    args = parser.parse_args()
    started = time.perf_counter()
    cache, user = fill(args.users, args.per_user)
    print(f"filled {cache.count()} random vectors in {time.perf_counter() - started:.1f} s")
    folder = Path(tempfile.mkdtemp(prefix="tailor-bench-snap-"))
    query = np.ones(DIM, dtype=np.float32) / np.sqrt(DIM)

    def search() -> None:
        cache.search(user, "instruction", query, k=10)

    def before() -> None:
        with cache._lock:
            entries = list(cache.entries())
        write_snapshot(folder, entries, embedder_id="m", dim=DIM, last_change_seq=1)

    def after() -> None:
        views = cache.capture()
        write_snapshot(folder, views, embedder_id="m", dim=DIM, last_change_seq=2)

    rows = [("objects under the lock (before)", *stall_during(before, search))]
    rows.append(("capture, encode unlocked (after)", *stall_during(after, search)))
    print(f"\n{'snapshot write':<34}{'longest stall ms':>18}{'write s':>10}")
    for name, stall, took in rows:
        print(f"{name:<34}{stall:>18.1f}{took:>10.2f}")
    started = time.perf_counter()
    _, arrays = read_snapshot_arrays(folder, embedder_id="m", dim=DIM)
    fresh = VectorCache(DIM)
    fresh.load_arrays(arrays)  # the service's start-up path
    del arrays
    load_s = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nsnapshot read back and loaded in {load_s:.1f} s; peak RSS {peak:.0f} MB")
    print(f"raw vector bytes: {cache.count() * DIM * 4 / 2**20:.0f} MB")


if __name__ == "__main__":
    main()
