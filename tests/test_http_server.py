"""The real thing: `tailor bootstrap` and `tailor serve` as separate processes, the real
embedder, and real HTTP over a loopback socket. Also checks a clean shutdown writes a
snapshot that the next start loads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests import server_process as srv

pytestmark = pytest.mark.slow


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


def test_bootstrap_then_serve_over_http(data: Path) -> None:
    port = srv.free_port()
    boot = subprocess.run(
        [sys.executable, "-m", "service", "bootstrap", "--name", "demo"],
        env=srv.env(data, port),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    key = json.loads(boot.stdout)["api_key"]
    assert "not shown again" in boot.stderr
    h = {"Authorization": f"Bearer {key}"}
    base = f"http://127.0.0.1:{port}"

    proc = srv.serve(data, port)
    try:
        assert srv.wait_ready(base, proc)["status"] == "ready"
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
        log = srv.stop(proc)
    assert "Traceback" not in log
    assert (data / "index" / "manifest.json").exists()

    proc = srv.serve(data, port)
    try:
        ready = srv.wait_ready(base, proc)
        assert ready["vectors"] == 2  # text + condition, loaded from the snapshot
        again = httpx.post(
            f"{base}/v1/users/u1/context",
            json={"messages": [{"role": "user", "content": "Make a plan for my week"}]},
            headers=h,
            timeout=30,
        ).json()
        assert again["instructions"] == ctx["instructions"]
    finally:
        srv.stop(proc)
