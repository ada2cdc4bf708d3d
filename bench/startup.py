"""Start-up time and memory of a real server with many stored vectors.

Fills SQL straight (no HTTP per row) with `--users` x `--per-user` instructions whose
text vectors are synthetic (random unit vectors; a fake 384-dimension hashing embedder
serves the queries: no model is loaded, what is timed is the service's own start), then
starts `python -m service serve` three times on that data:

1. from SQL alone (no snapshot): the rebuild, which writes the first snapshot;
2. from the snapshot: time from spawn to /readyz 200, RSS when ready, then RSS after
   `--turns` /context calls for random users, and the turns' p50/p99;
3. the same again (the page cache is warm in both; the machine's other load is not
   controlled: read the load average printed with the table).

RSS is VmRSS of the server process: RssAnon (the process's own memory) and RssFile
(mapped snapshot pages, shared with the page cache and evictable) are shown apart.
Asserts nothing. `--db-from` reuses a filled tailor.db (to compare two code trees on
the same data: run this file from a copy, with PYTHONPATH naming the other tree).

    .venv/bin/python bench/startup.py --users 200 --per-user 200
    .venv/bin/python bench/startup.py --users 1000 --per-user 1000   # 1M vectors
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import httpx
import numpy as np

ADMIN = "bench-admin-token-" + "x" * 20
DIM = 384
MODEL = "bench/hashing-384"
QUERIES = ["plan a trip to Rome", "a recipe for dinner", "explain python code", "write a poem"]
EMBEDDER = '''
import hashlib, re
import numpy as np

class BenchEmbedder:
    """384 hashed word stems: a stand-in for MiniLM that loads in no time."""
    model_id = "bench/hashing-384"
    dim = 384

    def embed(self, texts):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"[a-z0-9]+", text.lower()):
                h = hashlib.blake2b(word[:5].encode(), digest_size=4).digest()
                out[row, int.from_bytes(h, "little") % self.dim] += 1.0
            norm = float(np.linalg.norm(out[row]))
            if norm:
                out[row] /= norm
            else:
                out[row, 0] = 1.0
        return out

def embedder():
    return BenchEmbedder()
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tree() -> str:
    """The code tree served: PYTHONPATH's first entry, else this file's repository."""
    named = os.environ.get("PYTHONPATH", "").split(os.pathsep)[0]
    return named or str(Path(__file__).resolve().parents[1])


def server_env(data: Path, port: int, helper: Path) -> dict[str, str]:
    path = [str(helper), tree()]
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in path if p),
        "TAILOR_DATA_DIR": str(data),
        "TAILOR_PORT": str(port),
        "TAILOR_HOST": "127.0.0.1",
        "TAILOR_ADMIN_TOKEN": ADMIN,
        "TAILOR_EMBEDDER_FACTORY": "tailor_bench_embedder:embedder",
        "TAILOR_RATE_LIMIT_PER_MINUTE": "0",
        "TAILOR_LOG_LEVEL": "WARNING",
        "HF_HUB_OFFLINE": "1",
    }


def fill(data: Path, helper: Path, users: int, per_user: int) -> tuple[str, list[str]]:
    """Tenant and users through the service's code, rows straight into SQL. Returns
    the tenant's API key and the users' external ids."""
    sys.path.insert(0, str(helper))
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import sqlalchemy as sa
    from fastapi.testclient import TestClient
    from sqlmodel import Session
    from tailor_bench_embedder import embedder  # type: ignore[import-not-found]

    from bench.context_latency import ready_with_key
    from service.app import create_app
    from service.settings import Settings
    from store.changes import record_user_change
    from store.db import create_db_engine
    from store.instructions import InstructionEmbeddings, first_version
    from store.models import Instruction, InstructionSource

    settings = Settings(data_dir=data, admin_token=ADMIN, rate_limit_per_minute=0)
    app = create_app(settings, embedder=embedder())
    names = [f"user-{n}" for n in range(users)]
    with TestClient(app) as client:
        key = ready_with_key(client, ADMIN)
        ports = app.state.ports
        scopes = []
        for name in names:
            client.post("/v1/users", json={"id": name}).raise_for_status()
            scopes.append(ports.users.resolve(ports.keys.authenticate(key), name))
        pool = ports.writer.instruction_keys("Use bullet points", "when I plan a trip")
    shutil.rmtree(data / "index", ignore_errors=True)
    engine = create_db_engine(settings.sqlalchemy_url)
    rng = np.random.default_rng(0)
    for scope in scopes:
        vectors = rng.normal(size=(per_user, DIM)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        keys = InstructionEmbeddings(MODEL, DIM, b"", None, pool.applicability, pool.requests)
        template = first_version(
            scope, "rule", None, False, InstructionSource.user, keys
        ).model_dump()
        rows = []
        for i in range(per_user):  # a copy of one row per item: the fill is not timed
            row_id = uuid.uuid4()
            rows.append(
                {
                    **template,
                    "id": row_id,
                    "instruction_id": row_id,
                    "text": f"rule {i}",
                    "text_embedding": vectors[i].tobytes(),
                }
            )
        with Session(engine) as session:
            session.execute(sa.insert(Instruction), rows)
            record_user_change(session, scope, "instruction", uuid.uuid4(), "created", 1)
            session.commit()
    engine.dispose()
    return str(key), names


def rss(pid: int) -> dict[str, float]:
    """VmRSS, RssAnon and RssFile of a process, in MB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            out[name] = int(value.split()[0]) / 1024
    return out


def cpu_s(pid: int) -> float:
    """CPU seconds the process has used (user + system): on a loaded machine the
    wall-clock start-up mostly measures the other jobs, this does not."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start(data: Path, helper: Path) -> tuple[subprocess.Popen[bytes], str, float]:
    port = free_port()
    log = open(data.with_name(data.name + "-serve.log"), "ab")  # noqa: SIM115
    began = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "service", "serve"],
        env=server_env(data, port, helper),
        cwd=tree(),  # `-m service` imports from the working directory first
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"server exited; see {log.name}")
        try:
            if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                return proc, base, time.perf_counter() - began
        except httpx.TransportError:
            pass
        time.sleep(0.05)


def turns(base: str, key: str, names: list[str], count: int) -> list[float]:
    headers = {"Authorization": f"Bearer {key}"}
    times = []
    with httpx.Client(base_url=base, headers=headers, timeout=120) as client:
        for n in range(count):
            user = random.Random(n).choice(names)
            body = {"messages": [{"role": "user", "content": QUERIES[n % len(QUERIES)]}]}
            began = time.perf_counter()
            client.post(f"/v1/users/{user}/context", json=body).raise_for_status()
            times.append((time.perf_counter() - began) * 1000)
    return times


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=600)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--per-user", type=int, default=200)
    parser.add_argument("--turns", type=int, default=100)
    parser.add_argument("--db-from", type=Path, help="a filled tailor.db (and its key file)")
    parser.add_argument("--keep", type=Path, help="fill into this folder and keep it")
    args = parser.parse_args()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    root = args.keep or Path(tempfile.mkdtemp(prefix="tailor-bench-start-"))
    data = root / "data"
    helper = root / "helper"
    helper.mkdir(parents=True, exist_ok=True)
    (helper / "tailor_bench_embedder.py").write_text(textwrap.dedent(EMBEDDER))
    began = time.perf_counter()
    if args.db_from:
        data.mkdir(parents=True, exist_ok=True)
        shutil.copy(args.db_from, data / "tailor.db")
        key, names = json.loads(args.db_from.with_suffix(".key.json").read_text())
        how = f"copied from {args.db_from}"
    else:
        key, names = fill(data, helper, args.users, args.per_user)
        (data / "tailor.key.json").write_text(json.dumps([key, names]))
        how = "filled"
    print(f"{args.users * args.per_user} vectors {how} in {time.perf_counter() - began:.0f} s")
    rows: list[tuple[str, float, float, dict[str, float], dict[str, float], list[float]]] = []
    for label in ("from SQL (no snapshot)", "from the snapshot", "from the snapshot again"):
        proc, base, ready_s = start(data, helper)
        ready, cpu = rss(proc.pid), cpu_s(proc.pid)
        times = turns(base, key, names, args.turns)
        after = rss(proc.pid)
        stop(proc)
        rows.append((label, ready_s, cpu, ready, after, times))
    load = os.getloadavg()
    print(f"\nload average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; {os.cpu_count()} CPUs")
    print(
        f"{'start':<26}{'ready s':>8}{'CPU s':>6}{'RSS MB':>8}{'anon':>7}{'file':>7}"
        f"{'RSS after':>10}{'anon':>7}{'file':>7}{'turn p50':>9}{'p99 ms':>8}"
    )
    for label, ready_s, cpu, ready, after, times in rows:
        p99 = sorted(times)[max(0, int(len(times) * 0.99) - 1)]
        print(
            f"{label:<26}{ready_s:>8.1f}{cpu:>6.1f}{ready['VmRSS']:>8.0f}"
            f"{ready.get('RssAnon', 0):>7.0f}"
            f"{ready.get('RssFile', 0):>7.0f}{after['VmRSS']:>10.0f}{after.get('RssAnon', 0):>7.0f}"
            f"{after.get('RssFile', 0):>7.0f}{statistics.median(times):>9.1f}{p99:>8.1f}"
        )
    print(f"raw float32 vectors: {args.users * args.per_user * DIM * 4 / 2**20:.0f} MB")


if __name__ == "__main__":
    main()
