"""Throughput of /context under concurrent load, over real HTTP, against what the
embedder alone can do. Prints a table; asserts nothing.

1. The ceiling: the packaged MiniLM in this process, single calls and batches of 32
   (sentences/s), before the server starts, with the same torch thread count.
2. A server in its own process (uvicorn, the real MiniLM, SQLite, access log off),
   filled over HTTP with N users x M standing instructions.
3. wrk (the Debian package; installed with apt-get when missing and run as root)
   drives POST /context at each concurrency for a fixed time, a Lua script rotating
   users and queries. Reported per level: good turns/s (2xx), its ratio to the batch-32
   ceiling, p50/p99 latency (wrk's, over all answers), 429s, other failures, the
   server's CPU (cores busy) and the machine's load average.

    .venv/bin/python bench/concurrency.py --users 100 --instructions 100 --duration 10
    .venv/bin/python bench/concurrency.py --server-root /old/checkout --server-root .

With several --server-root, each gets its own server and data, and the levels
interleave (old c1, new c1, old c8, ...), so a shared machine's load hits both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.context_latency import QUERIES, TOPICS  # noqa: E402

_EMBEDDER: dict[str, Any] = {}
ADMIN_TOKEN = "bench-admin-token-" + "x" * 20

LUA = r"""
local users = %(users)d
local key = "%(key)s"
local queries = %(queries)s
local threads = {}
local counter = 0

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  counter = math.random(0, 100000)
  n429 = 0
  nother = 0
end

function request()
  counter = counter + 1
  local query = queries[(counter %% #queries) + 1]
  local body = '{"messages":[{"role":"user","content":"' .. query .. '"}]}'
  return wrk.format("POST", "/v1/users/user-" .. (counter %% users) .. "/context",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key}, body)
end

function response(status, headers, body)
  if status == 429 then
    n429 = n429 + 1
  elseif status >= 300 then
    nother = nother + 1
  end
end

function done(summary, latency, requests)
  local t429, tother = 0, 0
  for _, thread in ipairs(threads) do
    t429 = t429 + thread:get("n429")
    tother = tother + thread:get("nother")
  end
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p99_us": %%d, ' ..
    '"n429": %%d, "other_status": %%d, "socket_errors": %%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    t429, tother, e.connect + e.read + e.write + e.timeout))
end
"""


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, env=env)
        found = shutil.which("wrk")
    if not found:
        sys.exit("wrk is missing: install the 'wrk' package (apt-get install wrk)")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def embedder_ceiling(seconds: float, threads: int) -> tuple[float, float]:
    """(single calls per second, sentences per second in batches of 32)."""
    import torch

    from personalization.embedder import SentenceTransformerEmbedder

    torch.set_num_threads(threads)
    embedder = _EMBEDDER.get("model") or SentenceTransformerEmbedder()
    _EMBEDDER["model"] = embedder
    batch = [QUERIES[i % len(QUERIES)] for i in range(32)]
    embedder.embed(batch)

    def rate(texts: list[str]) -> float:
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            embedder.embed(texts)
            done += len(texts)
        return done / (time.perf_counter() - start)

    return rate(batch[:1]), rate(batch)


def cpu_seconds(pid: int) -> float:
    """The process's CPU time and its children's (worker processes), alive or reaped."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    total = sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        children += [int(c) for c in task.read_text().split()]
    return total / os.sysconf("SC_CLK_TCK") + sum(cpu_seconds(c) for c in children)


def start_server(
    root: Path, data: Path, port: int, extra_env: dict[str, str], workers: int = 1
) -> subprocess.Popen[bytes]:
    """`workers` > 1: `tailor serve` with TAILOR_WORKERS (uvicorn's worker processes,
    each a replica with its own snapshot folder); 1: uvicorn on the app factory."""
    env = {
        **os.environ,
        "PYTHONPATH": str(root),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TAILOR_DATA_DIR": str(data),
        "TAILOR_ADMIN_TOKEN": ADMIN_TOKEN,
        "TAILOR_RATE_LIMIT_PER_MINUTE": "0",
        "TAILOR_LOG_LEVEL": "WARNING",
        **extra_env,
    }
    command = [
        sys.executable, "-m", "uvicorn", "--factory", "service.app:create_app",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    if workers > 1:
        env |= {
            "TAILOR_WORKERS": str(workers),
            "TAILOR_HOST": "127.0.0.1",
            "TAILOR_PORT": str(port),
        }
        command = [sys.executable, "-m", "service", "serve"]
    log = (data / "server.log").open("wb")
    return subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)


class Poster(Protocol):
    """What `fill` needs of a client: an httpx client, or an app's TestClient (which
    is built on another HTTP library)."""

    def post(self, url: str, *, json: Any = None) -> Any: ...


def fill(client: Poster, users: int, instructions: int, workers: int) -> float:
    for u in range(users):
        client.post("/v1/users", json={"id": f"user-{u}"}).raise_for_status()

    def write(n: int) -> None:
        u, i = divmod(n, instructions)
        topic, rule = TOPICS[i % len(TOPICS)]
        body = {
            "text": f"{rule} (variant {i})",
            "applies_when": f"when I ask about {topic}",
            "always_on": i % 20 == 0,
        }
        client.post(f"/v1/users/user-{u}/instructions", json=body).raise_for_status()

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(write, range(users * instructions)))
    return users * instructions / (time.perf_counter() - start)


def run_wrk(
    wrk: str, script: Path, base: str, path: str, concurrency: int, seconds: float
) -> dict[str, float]:
    threads = min(concurrency, 2)
    command = [
        wrk, f"-t{threads}", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--timeout", "30s",
        "-s", str(script), base + path,
    ]  # fmt: skip
    done = subprocess.run(command, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"wrk failed: {done.stdout}{done.stderr}")
    out = done.stdout
    line = next(li for li in out.splitlines() if li.startswith("RESULT "))
    result: dict[str, float] = json.loads(line.removeprefix("RESULT "))
    return result


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    base: str
    script: Path
    fill_rate: float = 0.0
    rows: list[tuple[float, ...]] = field(default_factory=list)


def serve_filled(
    root: Path,
    extra: dict[str, str],
    users: int,
    instructions: int,
    fill_workers: int,
    workers: int = 1,
) -> tuple[subprocess.Popen[bytes], httpx.Client, Path, float]:
    """A server of `root`'s code in its own process on a fresh data folder, ready and
    filled over HTTP with `users` x `instructions`. Returns the process, a client that
    carries the tenant's key, the data folder and the fill's writes/s."""
    data = Path(tempfile.mkdtemp(prefix="tailor-bench-conc-"))
    port = free_port()
    process = start_server(root, data, port, extra, workers)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120)
    deadline = time.monotonic() + 300
    try:
        while True:
            if process.poll() is not None:
                sys.exit(f"server exited; see {data / 'server.log'}")
            try:
                if client.get("/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                sys.exit("server not ready after 300 s")
            time.sleep(0.2)
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        created = client.post("/v1/tenants", json={"name": "bench"}, headers=admin)
        client.headers["Authorization"] = f"Bearer {created.json()['api_key']['key']}"
        print(f"{root}: filling {users} users x {instructions} instructions", flush=True)
        fill_rate = fill(client, users, instructions, fill_workers)
    except BaseException:  # not yet in the caller's hands to stop
        process.terminate()
        process.wait(30)
        raise
    return process, client, data, fill_rate


def launch(
    name: str, root: Path, extra: dict[str, str], args: argparse.Namespace, workers: int = 1
) -> Server:
    """Starts a filled server (`serve_filled`) and writes its wrk script."""
    process, client, data, fill_rate = serve_filled(
        root, extra, args.users, args.instructions, args.fill_workers, workers
    )
    server = Server(name, process, str(client.base_url).rstrip("/"), data / "context.lua")
    server.fill_rate = fill_rate
    key = client.headers["Authorization"].removeprefix("Bearer ")
    lua_queries = "{" + ", ".join(json.dumps(q) for q in QUERIES) + "}"
    server.script.write_text(LUA % {"users": args.users, "key": key, "queries": lua_queries})
    return server


def measure(wrk: str, server: Server, level: int, seconds: float) -> None:
    pid = server.process.pid
    cpu_before, wall_before = cpu_seconds(pid), time.perf_counter()
    r = run_wrk(wrk, server.script, server.base, "/v1/users/user-0/context", level, seconds)
    cores = (cpu_seconds(pid) - cpu_before) / (time.perf_counter() - wall_before)
    good = r["requests"] - r["n429"] - r["other_status"]
    server.rows.append(
        (
            level,
            good / (r["duration_us"] / 1e6),
            r["p50_us"] / 1000,
            r["p99_us"] / 1000,
            r["n429"],
            r["requests"],
            r["other_status"] + r["socket_errors"],
            cores,
            os.getloadavg()[0],
        )
    )
    print(f"  {server.name}, concurrency {level}: done", flush=True)


def ceilings(seconds: float) -> dict[int, tuple[float, float]]:
    options = sorted({1, min(len(os.sched_getaffinity(0)), 2)})
    return {t: embedder_ceiling(seconds, t) for t in options}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--instructions", type=int, default=100, help="per user")
    parser.add_argument("--duration", type=float, default=10, help="seconds per level")
    parser.add_argument("--levels", default="1,8,32,64", help="concurrency levels")
    parser.add_argument("--fill-workers", type=int, default=16)
    parser.add_argument("--ceiling-seconds", type=float, default=4)
    parser.add_argument(
        "--server-root",
        action="append",
        help="checkout whose server is measured (repeat to compare; levels interleave); "
        "PATH@N serves it with N worker processes (TAILOR_WORKERS)",
    )
    parser.add_argument(
        "--server-env", action="append", default=[], help="NAME=VALUE for every server"
    )
    args = parser.parse_args()
    specs = [str(r) for r in (args.server_root or [ROOT])]
    roots = [
        (Path(spec.partition("@")[0]).resolve(), int(spec.partition("@")[2] or 1)) for spec in specs
    ]
    extra = dict(item.split("=", 1) for item in args.server_env)

    wrk = ensure_wrk()
    load_before = os.getloadavg()[0]
    before = ceilings(args.ceiling_seconds)
    servers: list[Server] = []
    try:
        for root, workers in roots:
            name = str(root) if workers == 1 else f"{root}, {workers} workers"
            servers.append(launch(name, root, extra, args, workers))
        for server in servers:
            run_wrk(wrk, server.script, server.base, "/v1/users/user-0/context", 8, 3)  # warm-up
        for level in [int(x) for x in args.levels.split(",")]:
            for server in servers:
                measure(wrk, server, level, args.duration)
    finally:
        for server in servers:
            server.process.terminate()
            server.process.wait(30)
    after = ceilings(args.ceiling_seconds)

    print(
        f"\n/context over HTTP (wrk), {args.users} users x {args.instructions} instructions, "
        f"{args.duration:g} s per level; load average at start {load_before:.1f}, "
        f"{len(os.sched_getaffinity(0))} cores"
    )
    for t in before:
        print(
            f"embedder alone, torch threads {t}: {before[t][0]:.0f} / {after[t][0]:.0f} single "
            f"calls/s, {before[t][1]:.0f} / {after[t][1]:.0f} sentences/s in batches of 32 "
            "(before / after the load)"
        )
    ceiling = max((before[t][1] + after[t][1]) / 2 for t in before)
    print(f"ceiling (the better thread count, mean of before and after): {ceiling:.0f} sentences/s")
    header = (
        f"{'conc':>5}{'turns/s':>9}{'÷ ceiling':>11}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'429s':>13}{'failed':>8}{'srv CPU':>9}{'load':>6}"
    )
    for server in servers:
        print(f"\nserver {server.name} (fill over HTTP: {server.fill_rate:.0f} writes/s)")
        print(header)
        for level, rate, p50, p99, n429, total, failed, cores, load in server.rows:
            print(
                f"{level:>5.0f}{rate:>9.0f}{rate / ceiling:>11.2f}{p50:>9.1f}{p99:>9.1f}"
                f"{f'{n429:.0f}/{total:.0f}':>13}{failed:>8.0f}{cores:>9.2f}{load:>6.1f}"
            )


if __name__ == "__main__":
    main()
