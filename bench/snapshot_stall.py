"""Longest stall of a search while a snapshot is written, and start-up from it.

Fills a vector cache with random unit vectors (no model: the fill is synthetic, the
code timed is the service's), then, while one thread searches one user's block in a
loop, writes a snapshot three times: as the service did long ago (every vector turned
into an object while the cache lock was held), a full write of captured views
(`VectorCache.capture`: views in O(blocks) under the lock, segments written outside
it), and an incremental one after `--changed` users changed (only their blocks are
written; the rest stay in the segments they are in). Prints the longest search latency
during each write and the write's duration, then the time to map the snapshot and
hold every block (the service's start: `load_snapshot` + `VectorCache.load_block`), a
search over the mapped blocks, and the process's RSS. Asserts nothing.

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

from store.snapshot import BlockRef, load_snapshot, write_snapshot
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
    parser.add_argument("--changed", type=int, default=10, help="users changed before the third")
    parser.add_argument(
        "--skip-objects", action="store_true", help="skip the slow objects-under-the-lock write"
    )
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

    placed: dict[int, BlockRef] = {}

    def after() -> None:
        views = cache.capture()
        manifest = write_snapshot(folder, views, embedder_id="m", dim=DIM, last_change_seq=2)
        placed.update(manifest.placed)

    rng = np.random.default_rng(1)
    changed = [v.user_id for v in cache.capture()[1 : 1 + args.changed]]

    def incremental() -> None:
        for user_id in changed:  # a new row each (not timed for the stall: see below)
            vector = rng.normal(size=DIM).astype(np.float32)
            cache.put(user_id, "instruction", uuid.uuid4(), [(0, vector / np.linalg.norm(vector))])
        views = cache.capture()
        write_snapshot(folder, views, embedder_id="m", dim=DIM, last_change_seq=3, placed=placed)

    rows = []
    if not args.skip_objects:
        rows.append(("objects under the lock (long ago)", *stall_during(before, search)))
    rows.append(("capture, full segment write", *stall_during(after, search)))
    rows.append((f"incremental, {args.changed} users changed", *stall_during(incremental, search)))
    print(f"\n{'snapshot write':<38}{'longest stall ms':>18}{'write s':>10}")
    for name, stall, took in rows:
        print(f"{name:<38}{stall:>18.1f}{took:>10.2f}")
    cache.clear()  # the fill's memory goes (mostly), so the load's RSS shows
    rss_before = _rss_mb()
    started = time.perf_counter()
    loaded = load_snapshot(folder, embedder_id="m", dim=DIM)
    fresh = VectorCache(DIM)
    for _, block in loaded.live_blocks():  # the service's start-up path
        fresh.load_block(block)
    load_s = time.perf_counter() - started
    rss_loaded = _rss_mb()
    started = time.perf_counter()
    hits = fresh.search(user, "instruction", query, k=10)
    first_s = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"\nsnapshot mapped and every block held in {load_s:.2f} s "
        f"(RSS +{rss_loaded - rss_before:.0f} MB); first search of a mapped block "
        f"{first_s * 1000:.1f} ms ({len(hits)} hits)"
    )
    print(f"peak RSS of this process (the fill included) {peak:.0f} MB")
    print(f"raw vector bytes: {args.users * args.per_user * DIM * 4 / 2**20:.0f} MB")


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


if __name__ == "__main__":
    main()
