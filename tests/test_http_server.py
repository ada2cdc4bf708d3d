"""The real thing: `tailor bootstrap` and `tailor serve` as separate processes, the real
embedder, and real HTTP over a loopback socket. Also checks a clean shutdown writes a
snapshot that the next start loads."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(data: Path, port: int) -> dict[str, str]:
    return {
        **os.environ,
        "TAILOR_DATA_DIR": str(data),
        "TAILOR_PORT": str(port),
        "TAILOR_HOST": "127.0.0.1",
        "HF_HUB_OFFLINE": "1",
    }


def _serve(data: Path, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "service", "serve"],
        env=_env(data, port),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _wait_ready(
    base: str, proc: subprocess.Popen[bytes], timeout: float = 120
) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(proc.stdout.read().decode() if proc.stdout else "server exited")
        try:
            response = httpx.get(f"{base}/readyz", timeout=2)
            if response.status_code == 200:
                return dict(response.json())
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise AssertionError("server not ready in time")


def _stop(proc: subprocess.Popen[bytes]) -> str:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    return out.decode()


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


def test_bootstrap_then_serve_over_http(data: Path) -> None:
    port = _free_port()
    boot = subprocess.run(
        [sys.executable, "-m", "service", "bootstrap", "--name", "demo"],
        env=_env(data, port),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    key = json.loads(boot.stdout)["api_key"]
    assert "not shown again" in boot.stderr
    h = {"Authorization": f"Bearer {key}"}
    base = f"http://127.0.0.1:{port}"

    proc = _serve(data, port)
    try:
        assert _wait_ready(base, proc)["status"] == "ready"
        with httpx.Client(base_url=base, headers=h, timeout=30) as c:
            assert c.post("/v1/users", json={"id": "u1"}).status_code == 201
            made = c.post(
                "/v1/users/u1/instructions",
                json={"text": "Answer with bullet points", "applies_when": "when I ask for a plan"},
            ).json()
            ctx = c.post(
                "/v1/users/u1/context",
                json={"messages": [{"role": "user", "content": "Make a plan for my week"}]},
            ).json()
            assert [i["id"] for i in ctx["instructions"]] == [made["id"]]
            assert ctx["embedder"]["dim"] == 384
            unauth = httpx.get(f"{base}/v1/users", timeout=5)
            assert unauth.status_code == 401
            assert unauth.json()["error"]["code"] == "invalid_api_key"
    finally:
        log = _stop(proc)
    assert "Traceback" not in log
    assert (data / "index" / "manifest.json").exists()

    proc = _serve(data, port)
    try:
        ready = _wait_ready(base, proc)
        assert ready["vectors"] == 2  # text + condition, loaded from the snapshot
        again = httpx.post(
            f"{base}/v1/users/u1/context",
            json={"messages": [{"role": "user", "content": "Make a plan for my week"}]},
            headers=h,
            timeout=30,
        ).json()
        assert again["instructions"] == ctx["instructions"]
    finally:
        _stop(proc)
