"""Latency of /context: fills N users x M standing instructions with the real embedder,
then reports p50/p99 of (a) the in-process domain call, (b) the full endpoint over real
HTTP on loopback (uvicorn in this process), and (c) one bare query embedding, with
each as a ratio of (c); the three paths take turns query by query. Prints figures;
asserts nothing. `--users 1` is issue 11's case (one user of 100 items).

    .venv/bin/python bench/context_latency.py --users 10 --instructions 100 --queries 300
"""

from __future__ import annotations

import argparse
import logging
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import uvicorn
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


def timed(fns: dict[str, Callable[[int], object]], n: int) -> dict[str, list[float]]:
    """Each query through every path in turn (not one path's n, then the next's): a
    shared machine's load, which changes by the minute, falls on all paths alike."""
    out: dict[str, list[float]] = {name: [] for name in fns}
    for i in tqdm(range(n), desc="queries", leave=False):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn(i)
            out[name].append((time.perf_counter() - start) * 1000)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--instructions", type=int, default=100, help="per user")
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()

    logging.getLogger("httpx").setLevel(logging.WARNING)
    data = Path(tempfile.mkdtemp(prefix="tailor-bench-"))
    port = free_port()
    settings = Settings(
        data_dir=data,
        port=port,
        admin_token="bench-admin-token-" + "x" * 20,
        rate_limit_per_minute=0,
    )
    # here, before the model loads: torch keeps a thread count per thread, and this
    # thread makes the bare and in-process calls
    apply_thread_settings(settings, load_torch=True)
    embedder = SentenceTransformerEmbedder()
    app = create_app(settings, embedder=embedder)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    client = httpx.Client(base_url=base, timeout=60)
    while True:
        try:
            if client.get("/readyz").status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.1)

    admin = {"Authorization": f"Bearer {settings.admin_token.get_secret_value()}"}  # type: ignore[union-attr]
    key = client.post("/v1/tenants", json={"name": "bench"}, headers=admin).json()["api_key"]["key"]
    client.headers["Authorization"] = f"Bearer {key}"
    rng = random.Random(7)
    total = args.users * args.instructions
    with tqdm(total=total, desc="filling") as bar:
        for u in range(args.users):
            client.post("/v1/users", json={"id": f"user-{u}"}).raise_for_status()
            for i in range(args.instructions):
                topic, rule = TOPICS[i % len(TOPICS)]
                body = {
                    "text": f"{rule} (variant {i})",
                    "applies_when": f"when I ask about {topic}",
                    "always_on": rng.random() < 0.05,
                }
                client.post(f"/v1/users/user-{u}/instructions", json=body).raise_for_status()
                bar.update()

    ports: Ports = app.state.ports
    scopes = [
        ports.users.resolve(ports.keys.authenticate(key), f"user-{u}") for u in range(args.users)
    ]
    options = settings.context_options()

    def domain(i: int) -> None:
        ports.context.build(
            scopes[i % len(scopes)], [ChatMessage("user", QUERIES[i % len(QUERIES)])], options
        )

    def http(i: int) -> None:
        body = {"messages": [{"role": "user", "content": QUERIES[i % len(QUERIES)]}]}
        client.post(f"/v1/users/user-{i % args.users}/context", json=body).raise_for_status()

    def embed(i: int) -> None:
        embedder.embed([QUERIES[i % len(QUERIES)]])

    for fn in (embed, domain, http):  # warm-up
        for i in range(10):
            fn(i)
    results = timed(
        {
            "bare query embedding": embed,
            "context, in-process": domain,
            "context, HTTP loopback": http,
        },
        args.queries,
    )
    base_p50 = statistics.median(results["bare query embedding"])
    print(f"\n{args.users} users x {args.instructions} instructions, {args.queries} queries each")
    print(f"{'path':<26}{'p50 ms':>10}{'p99 ms':>10}{'p50 / embed':>14}")
    for name, values in results.items():
        p50, p99 = statistics.median(values), percentile(values, 99)
        print(f"{name:<26}{p50:>10.2f}{p99:>10.2f}{p50 / base_p50:>14.2f}")
    server.should_exit = True
    thread.join(timeout=10)


if __name__ == "__main__":
    main()
