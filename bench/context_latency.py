"""Latency of /context for one turn at a time: fills N users x M standing instructions
with the real embedder, then reports p50/p99 of

(a) one bare query embedding (the packaged MiniLM, called straight, in this process);
(b) the in-process domain call (`ContextBuilder.build` of an app built in this process);
(c) the full endpoint over real HTTP on loopback, to a server in its OWN process
    (uvicorn on the app factory with the deployed defaults: access log at INFO to a
    file, metrics on; only the rate limit is off), filled over HTTP,

each as a ratio of (a). The paths take turns query by query, so the machine's load
falls on all alike. Prints figures; asserts nothing. `--users 1` is issue 11's case
(one user of 100 items).

Why a separate server process: with uvicorn in this process, the HTTP client, the
bare-embedding timer and the server shared one GIL and one Python's CPU, which
inflated the HTTP figure in a way no deployment sees. Thread settings are the same on
both sides: this process applies the service's own (`apply_thread_settings`, default
settings) before the model loads, the server inherits the OMP variables it sets and
applies the same settings itself. On a 2-core machine the client and the server still
compete for cores with each other and with anything else running (nothing is pinned
by hand): read the load average printed with the table.

    .venv/bin/python bench/context_latency.py --users 1 --instructions 100 --queries 300
    .venv/bin/python bench/context_latency.py --users 1 --server-root /old --server-root .

With several --server-root, each checkout gets its own filled server and an HTTP row,
and all of them take turns within each query (before/after in one run).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from personalization.embedder import SentenceTransformerEmbedder
from personalization.messages import ChatMessage
from service.app import create_app
from service.ports import Ports
from service.settings import Settings
from service.threads import apply_thread_settings

TOPICS = [
    ("recipes and cooking", "Give quantities in grams"),
    ("travel plans and itineraries", "Use bullet points, one stop per line"),
    ("Python code", "Add type hints"),
    ("emails to clients", "Formal tone, sign as Sam"),
    ("workouts and exercise", "No high-impact moves"),
    ("investing and money", "Index funds only, amounts in euros"),
    ("music recommendations", "Prefer jazz"),
    ("health questions", "Cite sources"),
    ("book recommendations", "Hard science fiction"),
    ("gardening", "Container plants for a balcony"),
]
QUERIES = [
    "Can you suggest a dinner recipe for tonight?",
    "Plan three days in Kyoto for me.",
    "Write a function that merges two sorted lists.",
    "Draft an email telling the client we shipped.",
    "What exercises help with back pain?",
    "Where should I put 5000 euros?",
    "What should I listen to while working?",
    "Is it bad to drink coffee every day?",
    "What is the capital of Canada?",
    "Recommend a novel for the flight.",
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def ready_with_key(client: Any, admin_token: str) -> str:
    """Waits for /readyz on an in-process TestClient, makes a tenant, and sets its key on
    the client (the setup every in-process bench shares); returns the key."""
    while client.get("/readyz").status_code != 200:
        time.sleep(0.1)
    admin = {"Authorization": f"Bearer {admin_token}"}
    key = str(
        client.post("/v1/tenants", json={"name": "b"}, headers=admin).json()["api_key"]["key"]
    )
    client.headers["Authorization"] = f"Bearer {key}"
    return key


def timed(fns: Mapping[str, Callable[[int], object]], n: int) -> dict[str, list[float]]:
    """Each query through every path in turn (not one path's n, then the next's): a
    shared machine's load, which changes by the minute, falls on all paths alike."""
    out: dict[str, list[float]] = {name: [] for name in fns}
    for i in tqdm(range(n), desc="queries", leave=False):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn(i)
            out[name].append((time.perf_counter() - start) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--instructions", type=int, default=100, help="per user")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument(
        "--server-root",
        action="append",
        help="checkout whose server is measured over HTTP (repeat to compare in one run)",
    )
    args = parser.parse_args()
    # Here, not at the top: bench/concurrency.py imports this module's TOPICS and QUERIES.
    from fastapi.testclient import TestClient

    from bench.concurrency import ADMIN_TOKEN, ROOT, fill, serve_filled

    logging.getLogger("httpx").setLevel(logging.WARNING)
    settings = Settings(
        data_dir=Path(tempfile.mkdtemp(prefix="tailor-bench-")),
        admin_token=ADMIN_TOKEN,
        rate_limit_per_minute=0,
        log_level="WARNING",  # this process's app is only filled and called in-process
    )
    # here, before the model loads: torch keeps a thread count per thread, and this
    # thread makes the bare and in-process calls; the servers inherit OMP_NUM_THREADS
    apply_thread_settings(settings, load_torch=True)
    embedder = SentenceTransformerEmbedder()
    app = create_app(settings, embedder=embedder)
    roots = [Path(r).resolve() for r in (args.server_root or [ROOT])]
    servers = []
    try:
        # The deployed default: every request's access line, written to a file.
        for root in roots:
            process, client, _, _ = serve_filled(
                root, {"TAILOR_LOG_LEVEL": "INFO"}, args.users, args.instructions, 4
            )
            servers.append((root, process, client))
        with TestClient(app) as local:
            key = ready_with_key(local, ADMIN_TOKEN)
            fill(local, args.users, args.instructions, 1)
            results = measure(app, key, embedder, servers, args)
    finally:
        for _, process, _ in servers:
            process.terminate()
            process.wait(30)
    base_p50 = statistics.median(results["bare query embedding"])
    load = os.getloadavg()
    print(
        f"\n{args.users} users x {args.instructions} instructions, {args.queries} queries each; "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, "
        f"{len(os.sched_getaffinity(0))} cores"
    )
    width = max(26, *(len(name) + 2 for name in results))
    print(f"{'path':<{width}}{'p50 ms':>10}{'p99 ms':>10}{'p50 / embed':>14}")
    for name, values in results.items():
        p50, p99 = statistics.median(values), percentile(values, 99)
        print(f"{name:<{width}}{p50:>10.2f}{p99:>10.2f}{p50 / base_p50:>14.2f}")


def measure(
    app: Any,
    key: str,
    embedder: SentenceTransformerEmbedder,
    servers: list[tuple[Path, Any, Any]],
    args: argparse.Namespace,
) -> dict[str, list[float]]:
    ports: Ports = app.state.ports
    scopes = [
        ports.users.resolve(ports.keys.authenticate(key), f"user-{u}") for u in range(args.users)
    ]
    options = ports.settings.context_options()

    def domain(i: int) -> None:
        ports.context.build(
            scopes[i % len(scopes)], [ChatMessage("user", QUERIES[i % len(QUERIES)])], options
        )

    def over_http(client: Any) -> Callable[[int], None]:
        def http(i: int) -> None:
            body = {"messages": [{"role": "user", "content": QUERIES[i % len(QUERIES)]}]}
            client.post(f"/v1/users/user-{i % args.users}/context", json=body).raise_for_status()

        return http

    def embed(i: int) -> None:
        embedder.embed([QUERIES[i % len(QUERIES)]])

    paths: dict[str, Callable[[int], None]] = {
        "bare query embedding": embed,
        "context, in-process": domain,
    }
    for root, _, client in servers:
        name = "context, HTTP" + (f" ({root})" if len(servers) > 1 else ", own process")
        paths[name] = over_http(client)
    for fn in paths.values():  # warm-up
        for i in range(10):
            fn(i)
    return timed(paths, args.queries)


if __name__ == "__main__":
    main()
