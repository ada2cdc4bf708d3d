"""Crash safety: a real server process is SIGKILLed at random moments while a client
writes and snapshots are taken every few milliseconds. After each restart every
acknowledged write is there, nothing unacknowledged is half there, and the vector
index agrees with SQL."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROUNDS = int(os.environ.get("TAILOR_CRASH_ROUNDS", "10"))


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(data: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "TAILOR_DATA_DIR": str(data),
        "TAILOR_PORT": str(port),
        "TAILOR_EMBEDDER_FACTORY": "tests.fakes:HashingEmbedder",
        "TAILOR_SNAPSHOT_INTERVAL_S": "0.02",
        "TAILOR_LOG_LEVEL": "WARNING",
        "TAILOR_RATE_LIMIT_PER_MINUTE": "0",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "service", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def _ready(base: str, proc: subprocess.Popen[bytes]) -> dict[str, object]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        try:
            response = httpx.get(f"{base}/readyz", timeout=1)
            if response.status_code == 200:
                return dict(response.json())
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError("not ready")


def test_sigkill_loop_keeps_every_acknowledged_write(tmp_path: Path) -> None:
    data, port = tmp_path / "data", _port()
    base = f"http://127.0.0.1:{port}"
    boot = subprocess.run(
        [sys.executable, "-m", "service", "bootstrap", "--name", "crash"],
        env={**os.environ, "TAILOR_DATA_DIR": str(data)},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    h = {"Authorization": f"Bearer {json.loads(boot.stdout)['api_key']}"}
    acknowledged: set[str] = set()
    attempted = 0
    rng = random.Random(11)
    for round_ in range(ROUNDS):
        proc = _start(data, port)
        try:
            _ready(base, proc)
            if round_ == 0:
                httpx.post(f"{base}/v1/users", json={"id": "u"}, headers=h).raise_for_status()
            stop = threading.Event()

            def writer(stop: threading.Event = stop) -> None:
                nonlocal attempted
                with httpx.Client(base_url=base, headers=h, timeout=2) as client:
                    while not stop.is_set():
                        attempted += 1
                        body = {"text": f"rule {attempted}", "applies_when": f"topic {attempted}"}
                        try:
                            response = client.post("/v1/users/u/instructions", json=body)
                        except httpx.TransportError:
                            return  # killed mid-request: not acknowledged
                        if response.status_code == 201:
                            acknowledged.add(response.json()["id"])

            thread = threading.Thread(target=writer)
            thread.start()
            time.sleep(rng.uniform(0.2, 0.8))
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            stop.set()
            thread.join(timeout=10)

    proc = _start(data, port)
    try:
        ready = _ready(base, proc)
        stored: dict[str, dict[str, object]] = {}
        while True:  # page through everything (more than one page is normal here)
            page = httpx.get(
                f"{base}/v1/users/u/instructions",
                params={"limit": 500, "offset": len(stored)},
                headers=h,
            ).json()
            stored.update({item["id"]: item for item in page["items"]})
            if not page["items"]:
                break
        assert len(stored) == page["total"]
        assert acknowledged <= set(stored), "an acknowledged write was lost"
        assert len(stored) <= len(acknowledged) + ROUNDS  # at most one in flight per kill
        for item in stored.values():  # nothing half-written
            number = str(item["text"]).removeprefix("rule ")
            assert item["applies_when"] == f"topic {number}"
            assert item["version"] == 1
        assert ready["vectors"] == 2 * len(stored)  # text + condition for each, from SQL
        print(
            f"\ncrash loop: {ROUNDS} SIGKILLs, {attempted} writes attempted, "
            f"{len(acknowledged)} acknowledged, {len(stored)} stored"
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
